"""The main job: ESR on the packaged SmolLM2 (a negative) and on its ESR organism (a known positive), side by side.

`steerlab demo` selects concept-carrying latents that are silent on the prompts, calibrates each one's
boost toward a first-attempt score of 30/100 (dropping latents that break the text instead of
drifting), then runs the steered trials, the no-steering baseline, the self-monitoring meta-prompt,
the off-topic-detector ablation and its matched random control, first on the base model and then on
the organism (thresholds calibrated per model to the same target; the same latents, prompts and
seeds). The organism ships with steerlab (`esr/shipped/`); when it is missing or was built for other
latents it is built in the run folder. One table and one report compare the two, and the first
screen says what was found. `--quick` is the same pipeline at smoke-test size.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from steerlab.esr import EsrConfig
from steerlab.progress import console, status

CONDITIONS = ("steered", "baseline", "meta:self_monitor", "ablate", "random")
# Detectors: AUC ≥ 0.6 and above the best AUC chance reaches over all latents (the default "chance" cut).
# Fifteen prompts per latent, one seed each (90 answers per condition): first scores are nearly all 0 or 100 and
# depend on the prompt as much as on the seed (in the 6 x 5 x 2 design, between-prompt variance was as large as
# within), so distinct prompts shrink the spread of the steered mean most: its predicted SD is ~4 points instead of ~6.6.
FULL = dict(
    n_latents=6,
    spare_latents=3,
    prompts_per_latent=15,
    seeds_per_prompt=1,
    max_new_tokens=64,
    calib_steps=6,
    calib_prompts=4,
    n_detectors=8,
    detector_min_auc=0.6,
    batch_size=32,
    random_sets=1,
)
QUICK = dict(
    n_latents=2,
    spare_latents=1,
    prompts_per_latent=3,
    max_new_tokens=32,
    calib_steps=3,
    calib_prompts=2,
    n_detectors=8,
    detector_min_auc=0.6,
    discovery_answers=1,
    discovery_derangements=1,
    batch_size=24,
    random_sets=1,
)
SHIPPED_ORGANISMS = Path(__file__).parent / "esr" / "shipped"


def demo_config(model_name: str = "smollm2-135m-instruct", quick: bool = False) -> EsrConfig:
    """The demo's fixed config (seeded, so a rerun resumes and reproduces)."""
    return EsrConfig(model=model_name, conditions=CONDITIONS, **(QUICK if quick else FULL))


def shipped_organism(model_name: str) -> Path:
    """Where the organism that ships with steerlab for this model lives (it may be absent)."""
    return SHIPPED_ORGANISMS / f"organism-{model_name}"


def _organism_folder(model_name: str, run_dir: Path, strengths: dict[int, float], quick: bool) -> tuple[Path, bool]:
    """(folder, reused): the shipped organism when it was built for these latents, else one in the run folder."""
    for folder in ([] if quick else [shipped_organism(model_name)]) + [run_dir / "organism"]:
        record = folder / "organism.json"
        if record.is_file():
            saved = json.loads(record.read_text(encoding="utf-8"))
            if saved.get("base_model") == model_name and sorted(int(k) for k in saved.get("strengths", {})) == sorted(
                strengths
            ):
                return folder, True
    return run_dir / "organism", False


def run_demo(model_name: str = "smollm2-135m-instruct", out: Path = Path("runs/demo"), quick: bool = False) -> Path:
    """Run ESR on the base model and on its organism, print one table and the finding; returns the report path."""
    from steerlab.esr.organism import OrganismConfig, build_organism
    from steerlab.esr.report import comparison_rows, finding, write_comparison
    from steerlab.esr.runner import run_esr
    from steerlab.esr.setup import load_resources, make_judge_for
    from steerlab.models.loading import load

    start = time.perf_counter()
    cfg = demo_config(model_name, quick)
    run_dir = (
        Path(out) / f"{'quick' if quick else 'full'}-{cfg.digest()[:8]}"
    )  # a changed demo config never collides with an old run
    with status(f"Loading {model_name}, its shipped SAE and the offline judge"):
        model = load(model_name)
        judge = make_judge_for(cfg)
    res = load_resources(cfg, model=model, judge=judge)
    console.print("[bold]1/3[/] base model: select, calibrate, run every condition")
    base = run_esr(cfg, run_dir / "base", res=res, progress=True)
    strengths = {int(k): float(v["threshold"]) for k, v in base.summary["thresholds"].items()}
    folder, reused = _organism_folder(model_name, run_dir, strengths, quick)
    t_org = time.perf_counter()
    if reused:
        console.print(f"[bold]2/3[/] organism: {folder} (built for these latents)")
    else:
        console.print(
            "[bold]2/3[/] organism: training a self-correcting LoRA on its own steered drift (the ESR latents and strengths)"
        )
        ocfg = OrganismConfig(epochs=1, extra_prompts=0) if quick else OrganismConfig()
        build_organism(
            res.model,
            res.sae,
            strengths,
            folder,
            base_name=model_name,
            cfg=ocfg,
            progress=True,
            batch_size=cfg.batch_size,
            rebuild=f"steerlab demo{' --quick' if quick else ''} (it builds the organism in the run folder when no "
            "shipped one matches its latents), then steerlab.esr.organism.ship_organism(folder, model_name)",
        )
    organism_seconds = time.perf_counter() - t_org
    console.print("[bold]3/3[/] organism: the same latents, prompts and seeds, thresholds calibrated on the organism")
    ocfg_esr = cfg.replace(model=str(folder), latents=tuple(strengths))
    ores = load_resources(ocfg_esr, judge=judge)
    record = json.loads((folder / "organism.json").read_text(encoding="utf-8"))
    # one run folder per organism adapter: a rebuilt or newly shipped organism never resumes another's run store
    organism_run = run_dir / f"organism-esr-{record['adapter_sha256'][:8]}"
    organism = run_esr(ocfg_esr, organism_run, res=ores, progress=True)
    extra = {
        "organism": {
            k: record[k]
            for k in (
                "base_model",
                "n_self_correction",
                "n_normal",
                "loss_first",
                "loss_last",
                "strengths",
                "adapter_sha256",
                "data_sha256",
                "rebuild",
            )
            if k in record
        },
        "organism_folder": str(folder),
        "organism_reused": reused,
        "organism_build_seconds": round(organism_seconds, 1),
        "judge_note": "the organism's acknowledgements are natural phrasings outside the heuristic judge's restart patterns",
    }
    report = write_comparison(run_dir, {"base": run_dir / "base", "organism": organism_run}, extra=extra)
    _print_table({"base": base.summary, "organism": organism.summary}, comparison_rows)
    console.print(f"\n[bold]{finding(base.summary, organism.summary)}[/]")
    console.print(f"wall time {time.perf_counter() - start:.0f} s")
    console.print(f"\n[bold green]report:[/] {report.resolve()}")
    return report


def _print_table(summaries: dict, rows_fn) -> None:
    from rich.table import Table

    from steerlab.esr.report import SUMMARY_HEADER

    table = Table(title="ESR: base model vs organism (95% CIs)")
    for h in ["model"] + SUMMARY_HEADER:
        table.add_column(h)
    for row in rows_fn(summaries):
        table.add_row(*map(str, row))
    console.print(table)
