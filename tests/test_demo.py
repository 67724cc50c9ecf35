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
    r = subprocess.run([sys.executable, "-m", "steerlab", "demo", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--quick" in r.stdout
