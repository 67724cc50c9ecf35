"""The run store: identity keys, idempotent writes, config pinning, grades, export, real multi-process writers."""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steerlab.errors import SteerlabError
from steerlab.judges import Attempt, Grade
from steerlab.store import RunStore, Trial, export
from store_worker import CONFIG, trials

WORKER = str(Path(__file__).with_name("store_worker.py"))


def test_trial_key_is_identity_only():
    a = Trial("steered", "How?", seed=3, latent=12, strength=4, label="lava", extra={"x": 1})
    b = Trial("steered", "How?", seed=3, latent=12, strength=4.0, label="other label")
    assert a.key == b.key and a == b
    assert (
        len(
            {
                a.key,
                Trial("unsteered", "How?", 3, 12, 4).key,
                Trial("steered", "How?", 4, 12, 4).key,
                Trial("steered", "How?", 3, 13, 4).key,
                Trial("steered", "How?", 3, 12, 4.5).key,
                Trial("steered", "Why?", 3, 12, 4).key,
            }
        )
        == 6
    )


def test_idempotent_writes_and_resume(tmp_path):
    store = RunStore(tmp_path, {"a": 1})
    ts = trials(20)
    assert store.add_trials(ts) == 20 and store.add_trials(ts) == 0
    for t in store.pending()[:8]:
        assert store.put_generation(t.key, "first", [1], "eos")
    assert not store.put_generation(ts[0].key, "second")  # first write wins
    assert store.generation(ts[0].key)["text"] == "first"
    store.close()
    again = RunStore(tmp_path, {"a": 1})  # "restart" with the same config
    assert again.add_trials(ts) == 0
    assert [t.key for t in again.pending()] == [t.key for t in ts[8:]]
    assert again.counts()["generations"] == 8


def test_different_config_is_refused(tmp_path):
    RunStore(tmp_path, {"model": "a", "layer": 3}).close()
    with pytest.raises(SteerlabError, match=r"different config \(differs in: layer\)"):
        RunStore(tmp_path, {"model": "a", "layer": 4})


def test_missing_store_is_one_sentence(tmp_path):
    with pytest.raises(SteerlabError, match="No run store at"):
        RunStore(tmp_path / "nope", create=False)


def test_grades_success_replaces_error_never_the_reverse(tmp_path):
    store = RunStore(tmp_path)
    t = trials(1)[0]
    store.add_trials([t])
    store.put_generation(t.key, "resp")
    store.put_grade(t.key, Grade.failed("timeout", judge_id="j", rubric_version="v"))
    assert [x.key for x, _ in store.ungraded("j", "v")] == [t.key]
    store.put_grade(t.key, Grade((Attempt("a", 70),), judge_id="j", rubric_version="v"))
    store.put_grade(t.key, Grade.failed("late error", judge_id="j", rubric_version="v"))
    assert store.grades("j")[t.key].first_score == 70.0 and store.ungraded("j", "v") == []
    assert store.ungraded("other", "v") != []  # each judge keeps its own grades
    tries = sqlite3.connect(store.path).execute("SELECT tries FROM grades").fetchone()[0]
    assert tries == 2


def _filled_store(tmp_path):
    store = RunStore(tmp_path, {"a": 1})
    ts = trials(3)
    store.add_trials(ts)
    store.put_generation(ts[0].key, "Whisk eggs. No, wait! Lava.", [1, 2], "eos")
    store.put_generation(ts[1].key, "Fold it.", [3], "length")
    store.put_grade(
        ts[0].key, Grade((Attempt("Whisk eggs.", 80), Attempt("No, wait! Lava.", 5)), judge_id="j", rubric_version="v")
    )
    store.put_grade(ts[1].key, Grade.failed("timeout", judge_id="j", rubric_version="v"))
    return store, ts


def test_export_jsonl(tmp_path):
    store, ts = _filled_store(tmp_path)
    path, n = export(store, "jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert n == 3 and [r["trial_key"] for r in rows] == [t.key for t in ts]
    assert rows[0]["grades"][0]["n_attempts"] == 2 and rows[0]["grades"][0]["last_score"] == 5.0
    assert rows[1]["grades"][0]["error"] == "timeout" and rows[2]["response"] is None


def test_export_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    store, ts = _filled_store(tmp_path)
    path, n = export(store, "parquet", tmp_path / "out.parquet")
    table = pq.read_table(path).to_pylist()
    assert n == 3 and table[0]["grades"][0]["attempts"][1]["score"] == 5.0 and table[0]["latent"] == ts[0].latent


def test_export_parquet_without_pyarrow_is_one_sentence(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real_import(name, *args, **kwargs)

    store, _ = _filled_store(tmp_path)
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(SteerlabError, match=r"^Parquet export needs pyarrow; run `pip install pyarrow`"):
        export(store, "parquet")
    with pytest.raises(SteerlabError, match="Unknown export format 'csv'"):
        export(store, "csv")


def _worker(run_dir, n, delay, worker, log, mode="claim"):
    return subprocess.Popen(
        [sys.executable, WORKER, str(run_dir), str(n), str(delay), worker, str(log), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _logged(path):
    return path.read_text().split() if path.exists() else []


def _generation_keys(run_dir):
    db = sqlite3.connect(Path(run_dir) / "run.sqlite", timeout=30)
    try:
        return [r[0] for r in db.execute("SELECT trial_key FROM generations")]
    finally:
        db.close()


def test_kill_minus_9_mid_run_then_resume(tmp_path):
    n, run = 150, tmp_path / "run"
    first = _worker(run, n, 0.02, "w1", tmp_path / "log1")
    deadline = time.time() + 60
    while time.time() < deadline:
        if (run / "run.sqlite").exists() and len(_logged(tmp_path / "log1")) >= 30:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    before = set(_generation_keys(run))
    assert 30 <= len(before) < n  # killed mid-run, with work stored
    second = _worker(run, n, 0.0, "w1", tmp_path / "log2")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()[-2000:]
    after = _generation_keys(run)
    assert len(after) == len(set(after)) == n  # nothing lost, nothing duplicated
    assert set(after) == {t.key for t in trials(n)}
    redone = set(_logged(tmp_path / "log2"))
    assert redone.isdisjoint(before)  # the restart did only the missing work
    assert redone | before == set(after)


@pytest.mark.parametrize("mode", ["claim", "all"])
def test_two_processes_write_at_once(tmp_path, mode):
    n, run = 120, tmp_path / "run"
    procs = [_worker(run, n, 0.02, f"w{i}", tmp_path / f"log{i}", mode) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    keys = _generation_keys(run)
    assert len(keys) == len(set(keys)) == n
    logs = [_logged(tmp_path / f"log{i}") for i in range(2)]
    assert set(logs[0]).isdisjoint(logs[1])  # no trial was written twice
    assert sorted(logs[0] + logs[1]) == sorted(keys)
    store = RunStore(run, {**CONFIG, "n": n})
    assert store.counts()["trials"] == n and store.pending() == []
