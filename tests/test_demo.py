"""The demo is the ESR main job: its config and its CLI flag (the run itself is the ESR runner, tested in test_esr_*)."""

import subprocess
import sys

from steerlab.demo import CONDITIONS, demo_config


def test_demo_config_runs_the_esr_main_job():
    full, quick = demo_config(), demo_config(quick=True)
    assert full.conditions == quick.conditions == CONDITIONS
    assert {"steered", "baseline", "ablate"} <= set(CONDITIONS) and any(c.startswith("meta:") for c in CONDITIONS)
    assert full.judge == "heuristic" and full.sae == "default" and full.target == 30.0
    assert quick.n_latents * quick.prompts_per_latent < full.n_latents * full.prompts_per_latent
    assert quick.digest() != full.digest()


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
