"""ESR sub-commands end to end on the packaged SmolLM2 with its default SAE and the offline judge (tiny settings).

Asserts structure and sanity, never fixed numbers. Thresholds and detectors land in the steerlab
cache keyed by their config, so the commands share them.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.real

TINY = [
    "--n-latents",
    "2",
    "--prompts-per-latent",
    "2",
    "--max-new-tokens",
    "24",
    "--calib-steps",
    "2",
    "--calib-prompts",
    "1",
    "--n-detectors",
    "4",
    "--detector-min-auc",
    "0.5",
    "--detector-cut",
    "fixed",
    "--discovery-answers",
    "1",
    "--discovery-derangements",
    "1",
    "--batch-size",
    "16",
]


def cli(*args):
    from steerlab.cli.main import _register, app

    _register()
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("esr") / "main"
    cli("esr", "run", run, *TINY, "--conditions", "steered,baseline,meta:self_monitor,ablate,random")
    return run


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_run_all_main_conditions(main_run):
    s = _summary(main_run)
    assert {"steered", "baseline", "meta:self_monitor"} <= set(s["metrics"])
    for cond, m in s["metrics"].items():
        left_out = sum((s["excluded"].get(cond) or {}).values())
        assert s["n_trials"][cond] + left_out == 4
        for key in ("multi_attempt_rate", "esr_rate"):
            e = m[key]
            assert 0.0 <= e["lo"] <= e["value"] <= e["hi"] <= 1.0
        assert 0.0 <= m["first_score"]["value"] <= 100.0
    # the heuristic judge never sees a restart in unsteered answers this short; the baseline scores higher than steering
    assert s["metrics"]["baseline"]["first_score"]["value"] >= s["metrics"]["steered"]["first_score"]["value"] - 15
    cal = json.loads((main_run / "calibration.json").read_text())
    assert len(cal["thresholds"]) == 2 and all(t["threshold"] >= 0 for t in cal["thresholds"].values())
    det = json.loads((main_run / "detectors.json").read_text())
    assert det["n_prompts"] == 40 and det["n_shuffled"] == det["n_normal"] and 1 <= len(det["detectors"]) <= 4
    assert {"ablate", "random:0"} <= set(s["metrics"]) | set(s["excluded"])
    html = (main_run / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 3  # conditions, calibration, detectors (+ deltas when any restart)


def test_sweep_baseline_meta_commands(main_run, tmp_path):
    latents = ",".join(json.loads((main_run / "calibration.json").read_text())["thresholds"])
    cli("esr", "sweep", tmp_path / "sweep", *TINY, "--latents", latents, "--levels", "-1,1")
    s = _summary(tmp_path / "sweep")
    assert set(s["metrics"]) == {"boost:-1", "boost:+1"}
    cli("esr", "baseline", tmp_path / "base", *TINY, "--latents", latents)
    assert set(_summary(tmp_path / "base")["metrics"]) == {"baseline"}
    cli("esr", "meta", tmp_path / "meta", *TINY, "--latents", latents, "--variant", "dont_get_distracted")
    s = _summary(tmp_path / "meta")
    assert set(s["metrics"]) == {"steered", "meta:dont_get_distracted"}
    assert s["comparisons"]["meta:dont_get_distracted"]["esr"]["n_pairs"] == 4


def test_calibrate_detectors_ablate_random(main_run, tmp_path):
    latents = ",".join(json.loads((main_run / "calibration.json").read_text())["thresholds"])
    out = cli("esr", "calibrate", tmp_path / "cal", *TINY, "--latents", latents)
    assert "thresholds" in out
    out = cli("esr", "detectors", tmp_path / "det", *TINY)
    assert (tmp_path / "det" / "detectors.json").is_file()
    cli(
        "esr",
        "ablate",
        tmp_path / "abl",
        *TINY,
        "--latents",
        latents,
        "--ablation-layer",
        "steering",
        "--steer-layer",
        "15",
    )
    s = _summary(tmp_path / "abl")
    assert "steered" in s["metrics"]
    cli("esr", "random-control", tmp_path / "rnd", *TINY, "--latents", latents, "--sets", "1")
    rnd = json.loads((tmp_path / "rnd" / "random_sets.json").read_text())
    det = json.loads((tmp_path / "rnd" / "detectors.json").read_text())["detectors"]
    assert len(rnd["sets"][0]) == len(det) and not set(rnd["sets"][0]) & set(det)


def test_traces_regrade_report(main_run):
    cli("esr", "traces", main_run)
    traces = json.loads((main_run / "traces.json").read_text())
    assert traces["stats"]["n_episodes"] == len(traces["episodes"])
    assert traces["stats"]["n_baseline"] >= 1 or not json.loads((main_run / "detectors.json").read_text())["detectors"]
    cli("esr", "regrade", main_run, "--judge", "heuristic", "--low", "0.15", "--high", "0.65")
    reg = json.loads((main_run / "regrade.json").read_text())
    assert reg["n_pairs"] > 0 and 0.0 <= reg["multi_attempt_agreement"] <= 1.0
    cli("esr", "report", main_run)
    assert "Cross-judge agreement" in (main_run / "report.html").read_text()


def test_finetune_command(main_run, tmp_path):
    latents = ",".join(json.loads((main_run / "calibration.json").read_text())["thresholds"])
    cli(
        "esr",
        "finetune",
        tmp_path / "ft",
        *TINY,
        "--latents",
        latents,
        "--conditions",
        "steered",
        "--ratio",
        "0.5",
        "--n-examples",
        "8",
        "--epochs",
        "1",
        "--answer-tokens",
        "24",
    )
    ft = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert ft["train"]["n_self_correction"] == 4 and ft["train"]["n_normal"] == 4
    assert set(ft["base"]) == set(ft["tuned"]) == {"steered"}
    tuned = set(ft["tuned_thresholds"])  # latents that stay fluent on the tuned model (issue 13's fluency filter)
    assert tuned and tuned <= set(latents.split(","))


def test_bad_input_one_sentence(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    bad = tmp_path / "p.txt"
    bad.write_text("How do you boil an egg?\n\nHow do you fry an egg?\n")
    cases = [
        (["--prompts-file", bad], "blank"),
        (["--latents", "3,999999"], "out of range"),
        (["--target", "120"], "strictly between 0 and 100"),
    ]
    r = subprocess.run(
        [sys.executable, "-m", "steerlab", "esr", "finetune", str(tmp_path / "f"), "--ratio", "1.5"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2 and "mix ratio must lie in [0, 1]" in r.stderr
    for extra, needle in cases:
        r = subprocess.run(
            [sys.executable, "-m", "steerlab", "esr", "run", str(tmp_path / "x"), *map(str, extra)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 2 and len(errors) == 1 and needle in errors[0] and "Traceback" not in r.stderr, r.stderr


def test_kill_and_resume(tmp_path):
    """A `steerlab esr run` killed mid-generation and restarted ends with every trial generated and graded once."""
    run = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "steerlab",
        "esr",
        "run",
        str(run),
        *TINY,
        "--batch-size",
        "2",
        "--conditions",
        "steered,baseline",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    db = run / "run.sqlite"
    deadline = time.time() + 400
    n = 0
    while time.time() < deadline and proc.poll() is None:
        if db.is_file():
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    n = con.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            except sqlite3.OperationalError:
                n = 0
            if n >= 2:
                break
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as con:
        total, done = con.execute("SELECT (SELECT COUNT(*) FROM trials), (SELECT COUNT(*) FROM generations)").fetchone()
    assert 0 < done < total
    r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with sqlite3.connect(db) as con:
        trials = con.execute("SELECT COUNT(*), COUNT(DISTINCT trial_key) FROM trials").fetchone()
        gens = con.execute("SELECT COUNT(*), COUNT(DISTINCT trial_key) FROM generations").fetchone()
        grades = con.execute("SELECT COUNT(*), COUNT(DISTINCT trial_key) FROM grades WHERE error IS NULL").fetchone()
    assert trials == (total, total) and gens == (total, total) and grades == (total, total)
