"""`steerlab esr run --backend vllm` end to end (the `vllm` tier): calibration and trials on vLLM, killed with -9 and
resumed, and its temperature-0 texts against the hf run's. Small settings: a random ReLU SAE at layer 17, 2 latents."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

ARGS = [
    "--latents",
    "5,9",
    "--prompts-per-latent",
    "2",
    "--max-new-tokens",
    "16",
    "--calib-steps",
    "1",
    "--calib-prompts",
    "1",
    "--calib-max-new-tokens",
    "8",
    "--calib-upper",
    "40",
    "--temperature",
    "0",
    "--batch-size",
    "2",
    "--conditions",
    "steered,baseline",
]
N_TRIALS = 2 * 2 * 2  # latents x prompts x conditions, in 4 batches of 2


def _esr(run: Path, sae: Path, backend: str) -> list[str]:
    return [sys.executable, "-m", "steerlab", "esr", "run", str(run), "--sae", str(sae), "--backend", backend, *ARGS]


def _generations(run: Path) -> dict[str, tuple[str, list[int]]]:
    db = run / "run.sqlite"
    if not db.is_file():
        return {}
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = con.execute("SELECT trial_key, text, token_ids FROM generations").fetchall()
    except sqlite3.OperationalError:  # the store is still being created
        return {}
    finally:
        con.close()
    return {k: (text, json.loads(ids)) for k, text, ids in rows}


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory):
    from steerlab.sae import Sae, SaeConfig, save_sae

    folder = tmp_path_factory.mktemp("sae") / "random-l17"
    save_sae(Sae.random(SaeConfig(d_in=576, d_sae=1024, layer=17, activation="relu"), seed=3), folder)
    return folder


def test_esr_on_vllm_resumes_after_kill_and_agrees_with_hf(sae_dir, tmp_path):
    from steerlab.engine.vllm_backend import oracle_agreement
    from steerlab.models.gguf_cache import cache_root

    cache = tmp_path / "cache"  # a fresh threshold cache, so both runs calibrate; the converted models are shared
    cache.mkdir()
    (cache_root() / "models").mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(cache_root() / "models")
    env = {**os.environ, "STEERLAB_CACHE": str(cache)}
    hf_run, vllm_run = tmp_path / "hf", tmp_path / "vllm"
    hf = subprocess.Popen(
        _esr(hf_run, sae_dir, "hf"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # Start the vLLM run, kill the whole process group (driver and engine) with -9 once some trials are stored.
    proc = subprocess.Popen(
        _esr(vllm_run, sae_dir, "vllm"),
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 2400
    while time.time() < deadline and proc.poll() is None and not _generations(vllm_run):
        time.sleep(0.1)
    assert proc.poll() is None, "the vLLM run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(_generations(vllm_run))
    assert 0 < partial < N_TRIALS
    done = subprocess.run(_esr(vllm_run, sae_dir, "vllm"), env=env, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    _, hf_err = hf.communicate(timeout=2400)
    assert hf.returncode == 0, hf_err[-3000:]
    vllm_gens, hf_gens = _generations(vllm_run), _generations(hf_run)
    assert len(vllm_gens) == N_TRIALS == len(hf_gens)
    hf_cal, vllm_cal = (json.loads((r / "calibration.json").read_text())["thresholds"] for r in (hf_run, vllm_run))
    assert {k: v["threshold"] for k, v in vllm_cal.items()} == {k: v["threshold"] for k, v in hf_cal.items()}
    assert vllm_gens.keys() == hf_gens.keys()  # same thresholds, so the same trials
    keys = sorted(hf_gens)
    agreement = oracle_agreement([hf_gens[k][1] for k in keys], [vllm_gens[k][1] for k in keys])
    same_text = sum(hf_gens[k][0] == vllm_gens[k][0] for k in keys) / len(keys)
    print(
        f"\nESR AGREEMENT token agreement {agreement['token_agreement']:.4f}, "
        f"identical rows {agreement['identical_rows']:.3f}, "
        f"identical texts {same_text:.3f}, killed after {partial}/{N_TRIALS} trials"
    )
    assert agreement["token_agreement"] >= 0.99 and agreement["identical_rows"] >= 0.9 and same_text >= 0.9
    summary = json.loads((vllm_run / "summary.json").read_text())
    assert summary["counts"]["generations"] == N_TRIALS and (vllm_run / "report.html").is_file()
