"""The main job: the ESR experiment on the packaged SmolLM2 with its cached default SAE and the offline judge.

`steerlab demo` selects concrete latents that are silent on the prompts, calibrates each one's boost
toward a first-attempt score of 30/100, then runs steered trials, the no-steering baseline, a
self-monitoring meta-prompt and an off-topic-detector ablation, all in one resumable run directory,
and writes the HTML report. `--quick` is the same pipeline at smoke-test size.
"""

from __future__ import annotations

import time
from pathlib import Path

from steerlab.esr import EsrConfig
from steerlab.progress import console, status

CONDITIONS = ("steered", "baseline", "meta:self_monitor", "ablate")
# Detectors: AUC ≥ 0.6 and above the best AUC chance reaches over all latents (the default "chance" cut).
FULL = dict(n_latents=8, prompts_per_latent=5, max_new_tokens=64, calib_steps=6, calib_prompts=4, n_detectors=8,
            detector_min_auc=0.6, batch_size=32)
QUICK = dict(n_latents=2, prompts_per_latent=3, max_new_tokens=32, calib_steps=3, calib_prompts=2, n_detectors=8,
             detector_min_auc=0.6, discovery_answers=1, discovery_derangements=1, batch_size=24)


def demo_config(model_name: str = "smollm2-135m-instruct", quick: bool = False) -> EsrConfig:
    """The demo's fixed config (seeded, so a rerun resumes and reproduces)."""
    return EsrConfig(model=model_name, conditions=CONDITIONS, **(QUICK if quick else FULL))


def run_demo(model_name: str = "smollm2-135m-instruct", out: Path = Path("runs/demo"), quick: bool = False) -> Path:
    """Run the ESR main job and print its summary; returns the report path."""
    import steerlab
    from steerlab.cli.esr_commands import print_summary
    from steerlab.esr.runner import run_esr
    from steerlab.esr.setup import load_resources, make_judge_for
    from steerlab.sae.default import default_dir

    start = time.perf_counter()
    cfg = demo_config(model_name, quick)
    run_dir = Path(out) / f"{'quick' if quick else 'full'}-{cfg.digest()[:8]}"  # a changed demo config never collides with an old run
    with status(f"Loading {model_name}"):
        model = steerlab.load(model_name)
    if not (default_dir(model_name) / "sae" / "cfg.json").is_file():
        console.print("[bold]First use:[/] training the default SAE (cached for later runs).")
    with status("Loading the default SAE and the offline judge"):
        judge = make_judge_for(cfg)
    res = load_resources(cfg, model=model, judge=judge)
    result = run_esr(cfg, run_dir, res=res, progress=True)
    print_summary(result.summary)
    _print_headline(result.summary, cfg.target)
    console.print(f"wall time {time.perf_counter() - start:.0f} s")
    console.print(f"\n[bold green]report:[/] {result.report.resolve()}")
    return result.report


def _print_headline(summary: dict, target: float) -> None:
    m = summary["metrics"]
    lines = []
    if "steered" in m:
        lines.append(f"steered first-attempt score {m['steered']['first_score']['value']:.1f} (target {target:g}); "
                     f"multi-attempt {m['steered']['multi_attempt_rate']['value'] * 100:.1f}%, ESR {m['steered']['esr_rate']['value'] * 100:.1f}%")
    if "baseline" in m:
        lines.append(f"no-steering baseline: multi-attempt {m['baseline']['multi_attempt_rate']['value'] * 100:.1f}%, "
                     f"first score {m['baseline']['first_score']['value']:.1f}")
    for line in lines:
        console.print(line)
