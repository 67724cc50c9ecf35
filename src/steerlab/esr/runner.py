"""The shared ESR runner: select latents, calibrate, discover detectors, then generate and grade every trial.

Each stage's result is saved in the run directory before the next starts, and trials live in the run
store, so a killed run restarted with the same config redoes only what is missing. All pending trials
(any condition, latent and strength) are generated in mixed batches, one forward pass per step.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from steerlab.engine.scoring import trace
from steerlab.errors import SteerlabError
from steerlab.esr.batches import generate_batch
from steerlab.esr.calibration import CalibrationSettings, Threshold, ThresholdCache, calibrate
from steerlab.esr.config import EsrConfig
from steerlab.esr.metrics import Outcome, increase_factor, is_degraded, paired_comparison, relative_reduction, summarize
from steerlab.esr.setup import Resources, load_resources
from steerlab.esr.trials import build_trials, stable_int
from steerlab.interventions.specs import Record
from steerlab.judges.types import Grade, GradeRequest
from steerlab.models.gguf_cache import cache_root
from steerlab.paths import write_json
from steerlab.progress import progress_bar
from steerlab.store import RunStore, differing_keys


def _save(run_dir: Path, name: str, data: Any) -> None:
    write_json(run_dir / name, data, indent=1, default=str)


def _load(run_dir: Path, name: str) -> Any | None:
    path = run_dir / name
    return json.loads(path.read_text()) if path.is_file() else None


def sae_fingerprint(sae) -> dict:
    return {
        "source": sae.source,
        "cfg": sae.cfg.to_dict(),
        "w_dec": round(float(sae.W_dec.detach().double().abs().sum()), 3),
    }


# --- stage 1: latents ----------------------------------------------------------------------------------
def resolve_latents(res: Resources, cfg: EsrConfig, run_dir: Path) -> list[int]:
    """The run's latents: explicit ones, or a seeded concrete, prompt-silent sample (saved once)."""
    if cfg.latents:
        return list(cfg.latents)
    saved = _load(run_dir, "selection.json")
    if saved is None:
        from steerlab.esr.selection import select_latents

        backend = getattr(res.judge, "backend", None)  # an LLM judge rates label concreteness; offline rule otherwise
        saved = select_latents(
            res,
            cfg.n_latents + cfg.spare_latents,
            seed=stable_int(cfg.seed, "selection"),
            min_concreteness=cfg.min_concreteness,
            rater=backend.complete if backend is not None else None,
            min_coherence=cfg.min_coherence,
        )
        saved["labels"] = {str(i): res.label(i) for i in saved["latents"]}
        _save(run_dir, "selection.json", saved)
    if not saved["latents"]:
        raise SteerlabError(
            "No latent passed selection (concrete and silent on the prompts); lower min_concreteness or pass latents."
        )
    return [int(x) for x in saved["latents"]]


# --- stage 2: calibration ------------------------------------------------------------------------------
def median_residual_norm(res: Resources, layer: int) -> float:
    recs = trace(res.model, res.prompts[:8], [Record(layer, res.sae.site, name="r", positions="all")], chat=True)
    norms = torch.cat([r["r"].float().norm(dim=-1) for r in recs])
    return float(norms.median())


def calibration_settings(res: Resources, cfg: EsrConfig) -> CalibrationSettings:
    layer = cfg.steer_layer if cfg.steer_layer is not None else res.sae.layer
    # On SmolLM2 + its default SAE a boost of ~5-10% of the residual norm already drives the first score to ~0,
    # so the default search spans [0, 0.75 × norm] with a prior centred low (measured, see the demo's calibration).
    upper = cfg.calib_upper if cfg.calib_upper is not None else round(0.75 * median_residual_norm(res, layer), 2)
    mean = cfg.calib_prior_mean if cfg.calib_prior_mean is not None else upper / 8
    std = cfg.calib_prior_std if cfg.calib_prior_std is not None else upper / 4
    return CalibrationSettings(
        target=cfg.target,
        steps=cfg.calib_steps,
        prompts_per_step=cfg.calib_prompts,
        lower=0.0,
        upper=upper,
        prior_mean=mean,
        prior_std=std,
        estimator=cfg.calib_estimator,
    )


def grade_requests(judge, items: list[GradeRequest], tries: int = 3) -> list[Grade]:
    """Grade, retrying failed grades up to `tries` times; a grade that still fails raises (calibration must not guess)."""
    grades = judge.grade_many(items)
    for _ in range(tries - 1):
        bad = [i for i, g in enumerate(grades) if not g.ok]
        if not bad:
            break
        for i, g in zip(bad, judge.grade_many([items[i] for i in bad])):
            grades[i] = g
    failed = [g for g in grades if not g.ok]
    if failed:
        raise SteerlabError(
            f"The judge failed {len(failed)} grades during calibration ({failed[0].error}); check the judge."
        )
    return grades


def make_measure(
    res: Resources, cfg: EsrConfig, settings: CalibrationSettings, texts: Callable[[list], list[str]] | None = None
) -> Callable[[dict[int, float]], dict[int, float]]:
    """({latent: boost}, n prompts) -> {latent: per-trial first-attempt scores} from one mixed batch (calib_max_new_tokens, default the trials' budget).

    texts: generate the calibration trials' texts another way (the vllm backend); default the hf engine.
    """
    calls = [0]

    def measure(boosts: dict[int, float], n_prompts: int) -> dict[int, list[float]]:
        call = calls[0]
        calls[0] += 1
        rows = []  # (latent, prompt, seed)
        for lat in boosts:
            rng = random.Random(stable_int(cfg.seed, "calibration", lat, call))
            for j in rng.sample(range(len(res.prompts)), min(n_prompts, len(res.prompts))):
                rows.append((lat, res.prompts[j], stable_int(cfg.seed, "calibration-seed", lat, call, j)))
        from steerlab.store import Trial

        trials = [Trial("calibration", p, s, lat, boosts[lat]) for lat, p, s in rows]
        max_new_tokens = cfg.calib_max_new_tokens or cfg.max_new_tokens
        if texts is None:  # steering only: the SAE at its own layer
            gens = generate_batch(res.model, res.sae, cfg, trials, ablation=res.sae, max_new_tokens=max_new_tokens)
            answers = [g.text for g in gens]
        else:
            answers = texts(trials)
        grades = grade_requests(
            res.judge, [GradeRequest(t.prompt, a, res.label(t.latent)) for t, a in zip(trials, answers)]
        )
        out: dict[int, list[float]] = {lat: [] for lat in boosts}
        by_latent: dict[int, list[str]] = {lat: [] for lat in boosts}
        for t, g, answer in zip(trials, grades, answers):
            out[t.latent].append(g.first_score if g.attempts else 0.0)  # no attempt at all = no answer: 0
            by_latent[t.latent].append(answer)
        measure.last_texts = by_latent  # type: ignore[attr-defined]  # the final check's answers: their degeneration is recorded
        return out

    return measure


def calibration_key(res: Resources, cfg: EsrConfig, settings: CalibrationSettings) -> dict:
    """Everything that changes a threshold (the original keyed only on model + latent)."""
    return {
        "model": res.model.fingerprint(),
        "sae": sae_fingerprint(res.sae),
        "judge": res.judge.judge_id,
        "rubric": res.judge.rubric_version,
        "settings": settings.__dict__,
        "max_new_tokens": cfg.calib_max_new_tokens or cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "repetition_penalty": cfg.repetition_penalty,
        "steer_layer": cfg.steer_layer,
        "prompts": stable_int(*res.prompts, modulo=10**12),
        "seed": cfg.seed,
        "version": 4,
    }


def _reusable_calibration(
    saved: dict, key: dict, settings: CalibrationSettings, latents: list[int], run_dir: Path
) -> bool:
    """Whether a run folder's calibration.json holds this run's thresholds.

    It does when it names the same latents and was calibrated under the same key (model, SAE, judge, settings,
    prompts, seed, code version). A file from before keys were saved is judged by its settings alone. A mismatch
    in a folder whose trials already ran is refused: those trials used the old thresholds, and mixing them with new
    ones would corrupt the rates. With no trials yet, the caller recalibrates.

    Raises:
        SteerlabError: the folder's trials were run under a different calibration.
    """
    if sorted(int(k) for k in saved["thresholds"]) != sorted(latents):
        return False
    old_key = saved.get("key")
    if old_key is None:
        changed = ["settings"] if differing_keys({"s": saved.get("settings")}, {"s": settings.__dict__}) else []
    else:
        changed = differing_keys(old_key, key)
    if not changed:
        return True
    if (run_dir / "run.sqlite").exists():
        raise SteerlabError(
            f"The run in {run_dir} was calibrated with a different config (calibration inputs changed: "
            f"{', '.join(changed)}) and its trials used those thresholds; resume with the same config, run into a "
            "new folder, or delete calibration.json and run.sqlite there to start over."
        )
    return False


def resolve_thresholds(
    res: Resources,
    cfg: EsrConfig,
    latents: list[int],
    run_dir: Path,
    *,
    progress: bool = False,
    cache: ThresholdCache | None = None,
    vllm_runner=None,
) -> dict[int, Threshold]:
    """Cached thresholds, calibrating (all latents together) the ones missing; saved in the run dir.

    vllm_runner: calibrate through this esr.vllm_trials.VllmTrialRunner (keyed apart from hf thresholds).
    """
    settings = calibration_settings(res, cfg)
    key = calibration_key(res, cfg, settings)
    if vllm_runner is not None:
        key["backend"] = "vllm"
    saved = _load(run_dir, "calibration.json")
    if saved is not None and _reusable_calibration(saved, key, settings, latents, run_dir):
        return {int(k): Threshold.from_dict(v) for k, v in saved["thresholds"].items()}
    cache = cache or ThresholdCache(cache_root() / "esr" / "thresholds.json")
    found = {lat: cache.get(key, lat) for lat in latents}
    missing = [lat for lat, t in found.items() if t is None]
    if missing:
        with progress_bar(progress) as bar:
            task = bar.add_task(f"calibrating {len(missing)} latents", total=settings.steps, info="")
            texts = None if vllm_runner is None else vllm_runner.calibration_texts
            fresh = calibrate(
                missing, make_measure(res, cfg, settings, texts), settings, on_step=lambda s: bar.advance(task)
            )
        cache.put(key, list(fresh.values()))
        found.update(fresh)
    _save(
        run_dir,
        "calibration.json",
        {
            "key": key,
            "settings": settings.__dict__,
            "cached": len(latents) - len(missing),
            "thresholds": {str(k): v.to_dict() for k, v in found.items()},
        },
    )
    return found  # type: ignore[return-value]


def fluent_latents(latents: list[int], thresholds: dict[int, Threshold], cfg: EsrConfig, run_dir: Path) -> list[int]:
    """The latents whose final calibration check stayed fluent (at most cfg.max_degenerate degenerate), n_latents at most.

    Drift, not breakage: a latent that turns the answer into loops, number runs or non-words gives
    the model nothing to notice. Dropped latents are listed in fluency.json; none left is an error.
    """
    if all(c == "baseline" for c in cfg.conditions):
        return latents
    rate = {lat: thresholds[lat].degenerate for lat in latents}
    keep = [lat for lat in latents if rate[lat] is None or rate[lat] <= cfg.max_degenerate]
    keep = keep if cfg.latents else keep[: cfg.n_latents]
    _save(
        run_dir,
        "fluency.json",
        {
            "max_degenerate": cfg.max_degenerate,
            "kept": keep,
            "dropped": [lat for lat in latents if lat not in keep],
            "degenerate": {str(lat): rate[lat] for lat in latents},
            "kinds": {str(lat): thresholds[lat].degenerate_kinds for lat in latents},
        },
    )
    if not keep:
        worst = ", ".join(f"{lat}: {rate[lat]:.0%}" for lat in latents[:6])
        raise SteerlabError(
            f"No latent stays fluent at its threshold (degenerate answers {worst}; the limit is "
            f"{cfg.max_degenerate:.0%}); pass other latents or raise --max-degenerate."
        )
    return keep


# --- stage 3: detectors --------------------------------------------------------------------------------
def detectors_key(res: Resources, cfg: EsrConfig) -> str:
    """Everything that changes the discovered detectors, hashed (so every run with that setup shares them)."""
    blob = {
        "model": res.model.fingerprint(),
        "sae": sae_fingerprint(res.sae),
        "prompts": res.discovery,
        "seed": cfg.seed,
        "max_new_tokens": cfg.max_new_tokens,
        "temperature": cfg.temperature,
        "repetition_penalty": cfg.repetition_penalty,
        "n": cfg.n_detectors,
        "min_auc": cfg.detector_min_auc,
        "cut": cfg.detector_cut,
        "answers": cfg.discovery_answers,
        "derangements": cfg.discovery_derangements,
        "rule": cfg.detector_rule,
        "span": cfg.detector_span,
        "version": 4,
    }
    return f"{stable_int(json.dumps(blob, sort_keys=True, default=str), modulo=16**12):012x}"


def discovered_detectors(res: Resources, cfg: EsrConfig, progress: bool = False) -> dict:
    """Detector discovery for this setup, from the detector cache or run now (and cached)."""
    cached = cache_root() / "esr" / f"detectors-{detectors_key(res, cfg)}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    from steerlab.esr.detectors import discover

    found = discover(res, cfg, progress=progress)
    cached.parent.mkdir(parents=True, exist_ok=True)
    _save(cached.parent, cached.name, found)
    return found


def resolve_detectors(res: Resources, cfg: EsrConfig, run_dir: Path, progress: bool = False) -> dict:
    """The run's detectors: saved in the run dir, else the fixed set of the config, else discovered (cached)."""
    saved = _load(run_dir, "detectors.json")
    if saved is None:
        if cfg.detectors:
            saved = {
                "detectors": list(cfg.detectors),
                "source": "given",
                "strict_rule": [],
                "n_eligible": len(cfg.detectors),
                "stats": {},
                "labels": {str(i): res.label(i) for i in cfg.detectors},
            }
        else:
            saved = {**discovered_detectors(res, cfg, progress), "source": "discovered"}
        _save(run_dir, "detectors.json", saved)
    return saved


def resolve_random_sets(res: Resources, cfg: EsrConfig, detectors: list[int], run_dir: Path) -> list[list[int]]:
    """The random-latent control: sets matched to the detectors on firing frequency and magnitude (saved in the run dir)."""
    saved = _load(run_dir, "random_sets.json")
    if saved is None:
        from steerlab.esr.detectors import matched_random_sets

        found = resolve_detectors(res, cfg, run_dir)
        activity = found["activity"] if "activity" in found else discovered_detectors(res, cfg)["activity"]
        try:
            sets = matched_random_sets(detectors, activity, cfg.random_sets, stable_int(cfg.seed, "random"))
        except ValueError as exc:
            raise SteerlabError(f"The random-latent control cannot be matched: {exc}; lower --sets.") from exc
        freq, mag = activity["frequency"], activity["mean_active"]
        saved = {
            "sets": sets,
            "matched_on": "frequency and mean activation when firing, over discovery answer tokens",
            "frequencies": [[freq[i] for i in s] for s in sets],
            "magnitudes": [[mag[i] for i in s] for s in sets],
            "detector_frequencies": [freq[i] for i in detectors],
            "detector_magnitudes": [mag[i] for i in detectors],
        }
        _save(run_dir, "random_sets.json", saved)
    return saved["sets"]


# --- stage 4: trials -----------------------------------------------------------------------------------
def generate_pending(
    store: RunStore,
    res: Resources,
    cfg: EsrConfig,
    *,
    progress: bool = False,
    max_batches: int | None = None,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    backend: str = "hf",
    loader=None,
    vllm_runner=None,
) -> int:
    """Generate every trial without a generation, in mixed batches, each batch written as it finishes.

    ray_address: spread the batches over Ray actors ('local' starts a cluster here); backend: 'hf' or 'vllm'.
    loader: how Ray workers get (model, SAE) (default: load them from cfg; tests ship small ones).
    vllm_runner: the run's esr.vllm_trials.VllmTrialRunner when backend is 'vllm' (one engine per run); made here if None.
    """
    from steerlab.distributed.work import plan_batches
    from steerlab.esr.batches import generate_trials

    batches = plan_batches(store.pending(), cfg.batch_size, max_batches)
    written = 0
    with progress_bar(progress) as bar:
        task = bar.add_task("generating trials", total=sum(len(b) for b in batches), info="")

        def put(_: int, rows: list) -> None:  # the driver alone writes, one finished batch at a time
            nonlocal written
            written += store.put_generations(rows)
            bar.advance(task, len(rows))

        if ray_address is not None:
            from steerlab.distributed import RayOptions, run_pool
            from steerlab.esr.batches import ConfigLoader, TrialBatchWork

            if backend != "hf":
                raise SteerlabError(
                    "The Ray runner drives the hf backend; run the vllm backend without --ray (it parallelises itself)."
                )
            opts = RayOptions(address=ray_address, workers=ray_workers)
            run_pool(batches, TrialBatchWork(cfg), loader or ConfigLoader(cfg), put, opts)
            return written
        if backend == "vllm":
            from steerlab.esr.vllm_trials import VllmTrialRunner

            run = vllm_runner or VllmTrialRunner(cfg, res.model, res.sae)
        elif backend == "hf":
            run = lambda batch: generate_trials(res.model, res.sae, cfg, batch)  # noqa: E731
        else:
            raise SteerlabError(f"Unknown backend '{backend}'; choose hf or vllm.")
        for i, batch in enumerate(batches):
            put(i, run(batch))
    return written


def grade_pending(store: RunStore, judge, *, chunk: int = 32, progress: bool = False) -> int:
    """Grade generations without a successful grade from this judge, through the one grading loop (`judges.runner`).

    The question the judge sees comes from the run's config (`judge_prompt`), so `steerlab judge run`
    and `steerlab esr run` store the same grade under the same key.
    """
    from steerlab.judges.runner import grade_run

    return grade_run(store, judge, chunk=chunk, progress=progress, check=False).attempted


def outcomes_by_condition(
    store: RunStore, judge_id: str, rubric: str, excluded: dict | None = None
) -> dict[str, dict[tuple, Outcome]]:
    """condition -> {(latent, prompt_index, rep): Outcome} over trials with a successful, non-empty grade.

    Trials left out (no grade yet, a judge error, or no attempt at all) are counted into `excluded`.
    """
    out: dict[str, dict[tuple, Outcome]] = {}
    for row in store.rows():
        grade = next((g for g in row["grades"] if g["judge_id"] == judge_id and g["rubric_version"] == rubric), None)
        if grade is None or grade["error"] or not grade["attempts"]:
            if excluded is not None:
                why = "ungraded" if grade is None else "judge_error" if grade["error"] else "no_attempt"
                excluded.setdefault(row["condition"], {}).setdefault(why, 0)
                excluded[row["condition"]][why] += 1
            continue
        scores = [a["score"] for a in grade["attempts"]]
        key = (row["latent"], row["extra"].get("prompt_index"), row["extra"].get("rep", 0))
        out.setdefault(row["condition"], {})[key] = Outcome(
            len(scores), scores[0], scores[-1], row["latent"], is_degraded(row["response"] or "")
        )
    return out


def summarize_run(store: RunStore, judge_id: str, rubric: str, *, n_boot: int = 2000) -> dict:
    """Per-condition metrics with CIs, paired comparisons against the steered condition, and ESR-threshold sensitivity."""
    excluded: dict = {}
    by_cond = outcomes_by_condition(store, judge_id, rubric, excluded)
    metrics = {
        c: {k: v.to_dict() for k, v in summarize(list(o.values()), n_boot=n_boot).items()} for c, o in by_cond.items()
    }
    sensitivity = {
        c: {str(d): summarize(list(o.values()), min_delta=d, n_boot=200)["esr_rate"].value for d in (0, 10, 25)}
        for c, o in by_cond.items()
    }
    comparisons = {}
    base = by_cond.get("steered")
    if base:
        for c, o in by_cond.items():
            if c == "steered":
                continue
            mb, mc = metrics["steered"], metrics[c]
            comparisons[c] = {
                "esr": paired_comparison(base, o, n_boot=n_boot),
                "multi_attempt": paired_comparison(base, o, event=lambda x: x.multi, n_boot=n_boot),
                "relative_reduction_pct": {
                    k: relative_reduction(mb[k]["value"], mc[k]["value"]) for k in ("multi_attempt_rate", "esr_rate")
                },
                "increase_factor": {
                    k: increase_factor(mb[k]["value"], mc[k]["value"]) for k in ("multi_attempt_rate", "esr_rate")
                },
            }
    return {
        "judge": judge_id,
        "rubric": rubric,
        "metrics": metrics,
        "comparisons": comparisons,
        "esr_sensitivity": sensitivity,
        "n_trials": {c: len(o) for c, o in by_cond.items()},
        "excluded": excluded,
    }


@dataclass
class RunResult:
    run_dir: Path
    summary: dict
    seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


def run_esr(
    cfg: EsrConfig,
    run_dir: str | Path,
    *,
    res: Resources | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    report: bool = True,
    ray_address: str | None = None,
    ray_workers: int | None = None,
    backend: str = "hf",
) -> RunResult:
    """The whole ESR loop for one config; resumable (rerun with the same config to finish a killed run).

    Latent selection, calibration, detector discovery, every configured condition's trials, grading and
    metrics with confidence intervals, all stored in `run_dir` (run.sqlite, summary.json, the report).

    Args:
        cfg: the experiment (model, SAE, judge, conditions, sizes, seeds); its digest keys the run.
        run_dir: the run folder; a rerun with the same config finishes the missing trials only.
        res: the loaded model, SAE and judge, to reuse across runs (default: loaded from cfg).
        progress: show progress bars.
        max_batches: stop generation after this many trial batches (smoke tests; a rerun continues).
        report: write the HTML report at the end.
        ray_address: run trial generation on Ray with the hf backend ("local" starts a cluster here; "auto" or
            host:port joins one); None runs it in this process.
        ray_workers: how many Ray actors (default one per GPU, else one per few CPUs).
        backend: "hf" (the fp32 oracle by default) or "vllm" (throughput; needs the vllm extra).

    Returns:
        A RunResult: the run folder, the summary (metrics per condition, thresholds, detectors, counts),
        wall seconds per stage, and the report path (None when report=False).
    """
    run_dir = Path(run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    if backend not in ("hf", "vllm"):
        raise SteerlabError(f"Unknown backend '{backend}'; choose hf or vllm.")
    if backend == "vllm" and ray_address is not None:
        raise SteerlabError(
            "The Ray runner drives the hf backend; run the vllm backend without --ray (it parallelises itself)."
        )
    res = res or load_resources(cfg, progress=progress)
    vllm_runner = None
    if backend == "vllm":
        from steerlab.engine.vllm_backend import require_vllm
        from steerlab.esr.vllm_trials import VllmTrialRunner

        require_vllm()
        vllm_runner = VllmTrialRunner(
            cfg, res.model, res.sae
        )  # one engine for calibration and trials, started on first use
    seconds["load"] = time.perf_counter() - t0
    t = time.perf_counter()
    latents = resolve_latents(res, cfg, run_dir)
    seconds["selection"] = time.perf_counter() - t
    t = time.perf_counter()
    if all(c == "baseline" for c in cfg.conditions):  # nothing is steered: no calibration needed
        thresholds = {lat: Threshold(lat, 0.0, float("nan"), False) for lat in latents}
    else:
        thresholds = resolve_thresholds(res, cfg, latents, run_dir, progress=progress, vllm_runner=vllm_runner)
    seconds["calibration"] = time.perf_counter() - t
    latents = fluent_latents(latents, thresholds, cfg, run_dir)
    thresholds = {lat: thresholds[lat] for lat in latents}
    detectors: list[int] = []
    random_sets: list[list[int]] = []
    kinds = {c.partition(":")[0] for c in cfg.conditions}
    if kinds & {"ablate", "random"}:
        t = time.perf_counter()
        detectors = resolve_detectors(res, cfg, run_dir, progress=progress)["detectors"]
        if "random" in kinds and detectors:
            random_sets = resolve_random_sets(res, cfg, detectors, run_dir)
        seconds["detectors"] = time.perf_counter() - t
    trials = build_trials(
        cfg, res.prompts, res.labels, {k: v.threshold for k, v in thresholds.items()}, detectors, random_sets
    )
    store = RunStore(
        run_dir,
        {
            "esr": cfg.to_dict(),
            "model": res.model.fingerprint(),
            "sae": sae_fingerprint(res.sae),
            "latents": latents,
            "thresholds": {str(k): v.threshold for k, v in thresholds.items()},
            "detectors": detectors,
            "random_sets": random_sets,
        },
    )
    try:
        store.add_trials(trials)
        t = time.perf_counter()
        generate_pending(
            store,
            res,
            cfg,
            progress=progress,
            max_batches=max_batches,
            ray_address=ray_address,
            ray_workers=ray_workers,
            backend=backend,
            vllm_runner=vllm_runner,
        )
        seconds["generation"] = time.perf_counter() - t
        t = time.perf_counter()
        grade_pending(store, res.judge, progress=progress)
        seconds["grading"] = time.perf_counter() - t
        summary = summarize_run(store, res.judge.judge_id, res.judge.rubric_version)
        summary["thresholds"] = {str(k): v.to_dict() for k, v in thresholds.items()}
        summary["target"] = cfg.target
        summary["counts"] = store.counts()
    finally:
        store.close()
    seconds["total"] = time.perf_counter() - t0
    summary["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    _save(run_dir, "summary.json", summary)
    result = RunResult(run_dir, summary, seconds)
    if report:
        from steerlab.esr.report import write_report

        result.report = write_report(run_dir)
    return result
