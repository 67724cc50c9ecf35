"""The demo is the ESR main job: its config and its CLI flag (the run itself is the ESR runner, tested in test_esr_*)."""

import subprocess
import sys

import pytest

from steerlab.demo import CONDITIONS, demo_config


def test_demo_config_is_the_esr_main_job():
    full, quick = demo_config(), demo_config(quick=True)
    assert full.conditions == quick.conditions == CONDITIONS
    assert {"steered", "baseline", "ablate"} <= set(CONDITIONS) and any(c.startswith("meta:") for c in CONDITIONS)
    assert full.judge == "heuristic" and full.sae == "default" and full.target == 30.0
    assert quick.n_latents * quick.prompts_per_latent < full.n_latents * full.prompts_per_latent
    assert quick.digest() != full.digest()


@pytest.mark.parametrize("flags, quick", [([], False), (["--quick"], True)])
def test_steerlab_demo_runs_esr_on_the_demo_config(flags, quick, run_cli, monkeypatch, tmp_path):
    """`steerlab demo [--quick]` hands run_esr exactly demo_config(quick) and a run folder named by its digest.

    The model, resources and run_esr are replaced by recorders (no model work); run_esr stops the demo after the
    base run. `make demo` runs the whole demo for real.
    """
    import steerlab.esr.runner
    import steerlab.esr.setup
    import steerlab.models.loading
    from steerlab.errors import SteerlabError

    seen = {}

    def fake_run_esr(cfg, run_dir, res=None, progress=False):
        seen.update(cfg=cfg, run_dir=run_dir, res=res)
        raise SteerlabError("stopped after the base run's config")

    monkeypatch.setattr(steerlab.models.loading, "load", lambda name: f"model:{name}")
    monkeypatch.setattr(steerlab.esr.setup, "make_judge_for", lambda cfg: "judge")
    monkeypatch.setattr(steerlab.esr.setup, "load_resources", lambda cfg, model=None, judge=None: (model, judge))
    monkeypatch.setattr(steerlab.esr.runner, "run_esr", fake_run_esr)
    code, text = run_cli("demo", "--out", tmp_path, *flags)
    assert code == 2 and "stopped after the base run's config" in text
    cfg = demo_config(quick=quick)
    assert seen["cfg"] == cfg and seen["cfg"].digest() == cfg.digest()
    assert seen["run_dir"] == tmp_path / f"{'quick' if quick else 'full'}-{cfg.digest()[:8]}" / "base"
    assert seen["res"] == ("model:smollm2-135m-instruct", "judge")


def test_demo_help_lists_quick():
    r = subprocess.run(
        [sys.executable, "-m", "steerlab", "demo", "--help"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "--quick" in r.stdout


def _summary(multi, esr, n=40):
    def est(v):
        import math

        half = 1.96 * math.sqrt(max(v * (1 - v), 1e-4) / n)
        return {
            "value": v,
            "lo": max(0.0, v - half),
            "hi": min(1.0, v + half),
            "boot_lo": None,
            "boot_hi": None,
            "n": n,
        }

    return {"metrics": {"steered": {"multi_attempt_rate": est(multi), "esr_rate": est(esr), "first_score": est(0.3)}}}


def test_finding_states_the_result_and_how_sure():
    from steerlab.esr.report import finding

    positive = finding(_summary(0.0, 0.0), _summary(0.5, 0.3))
    assert "reads the known positive" in positive and "n = 40" in positive
    negative = finding(_summary(0.05, 0.0), _summary(0.08, 0.02))
    assert "does NOT separate" in negative


def test_demo_reuses_a_shipped_organism_only_for_its_latents(tmp_path, monkeypatch):
    import json

    import steerlab.demo as demo

    monkeypatch.setattr(demo, "SHIPPED_ORGANISMS", tmp_path / "shipped")
    folder = demo.shipped_organism("m")
    folder.mkdir(parents=True)
    (folder / "organism.json").write_text(json.dumps({"base_model": "m", "strengths": {"3": 2.0, "7": 1.0}}))
    assert demo._organism_folder("m", tmp_path / "run", {3: 2.5, 7: 1.0}, quick=False) == (folder, True)
    assert demo._organism_folder("m", tmp_path / "run", {3: 2.5, 8: 1.0}, quick=False) == (
        tmp_path / "run" / "organism",
        False,
    )
    assert demo._organism_folder("other", tmp_path / "run", {3: 2.5, 7: 1.0}, quick=False)[1] is False
