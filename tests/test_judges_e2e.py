"""The openai judge end to end against our own server on loopback, including a server killed mid-run."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from serve_helpers import free_port, start_child
from steerlab.judges import GradeRequest, make_judge
from steerlab.judges.runner import grade_run
from steerlab.store import RunStore, Trial

RESPONSES = [
    ("How do you make an omelette?", "Whisk eggs, pour them into a buttered pan, fold and serve."),
    ("Explain how to fold a fitted sheet.", "Tuck the corners together. No, wait! Volcanoes erupt hot lava."),
    ("How do you write a thank-you note?", "Bees dance to show where the flowers are."),
    ("Explain how to compute an average.", "Add the numbers and divide by how many there are."),
    ("How do you iron a shirt?", "Start with the collar, then cuffs, sleeves and body."),
    ("Explain how to compost.", "Mix scraps with leaves, keep moist, turn weekly."),
    ("How do you clean a window?", "Use soapy water and a squeegee from top to bottom."),
    ("Explain how to plan a party.", "Let me try again. Pick a date, invite guests, order a cake."),
]


class KillMidRun:
    """Passes grading through to a judge, and SIGKILLs the server while the second chunk is in flight."""

    def __init__(self, judge, proc):
        self.judge, self.proc, self.calls = judge, proc, 0
        self.judge_id, self.rubric_version = judge.judge_id, judge.rubric_version

    def grade_many(self, items, progress=False):
        self.calls += 1
        if self.calls == 2:
            threading.Timer(0.05, lambda: self.proc.send_signal(signal.SIGKILL)).start()
        return self.judge.grade_many(items, progress=progress)

    def check(self):
        self.judge.check()

    def config(self):
        return self.judge.config()


def _grade_rows(run_dir):
    db = sqlite3.connect(Path(run_dir) / "run.sqlite")
    try:
        return db.execute("SELECT trial_key, error, tries FROM grades").fetchall()
    finally:
        db.close()


def _fill_store(run_dir, responses):
    store = RunStore(run_dir, {"experiment": "judge-e2e"})
    trials = [Trial("steered", p, seed=i, label="volcanoes") for i, (p, _) in enumerate(responses)]
    store.add_trials(trials)
    store.put_generations([(t.key, r, None, "eos", None) for t, (_, r) in zip(trials, responses)])
    return store


def kill_and_resume(
    model: str,
    tmp_path,
    max_tokens: int,
    responses=RESPONSES,
    start_timeout: float = 60.0,
    key_env: str = "",
    chunk: int = 2,
):
    """Grade a stored run through a server process, SIGKILL the server mid-run, restart it, resume."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    proc = start_child(model, port, start_timeout, key_env or None)
    try:
        model_id = "fake-judge" if model == "fake" else model.removeprefix("cli:")
        judge = make_judge(
            "openai",
            model_id,
            url,
            key_env,
            concurrency=2,
            max_tokens=max_tokens,
            max_retries=1,
            retry_base_delay=0.05,
            timeout=300,
        )
        store = _fill_store(tmp_path, responses)
        first = grade_run(store, KillMidRun(judge, proc), chunk=chunk)
        proc.wait(timeout=10)
        rows = _grade_rows(tmp_path)
        # Every trial has a recorded grade; the ones after the kill hold transport errors.
        assert first.attempted == len(responses) and len(rows) == len(responses)
        lost_calls = [r for r in rows if r[1] and r[1].startswith("judge call failed")]
        assert lost_calls and first.errors >= len(lost_calls)
        # Restart the server on the same address (same judge id) and resume: failed grades are retried.
        proc = start_child(model, port, start_timeout, key_env or None)
        second = grade_run(store, judge, chunk=chunk)
        assert second.attempted == first.errors  # exactly the failed ones, no successful grade redone
        rows = _grade_rows(tmp_path)
        assert len(rows) == len(responses)  # nothing lost, nothing duplicated
        assert not any(r[1] and r[1].startswith("judge call failed") for r in rows)
        retried = {k for k, e, _ in rows if e}
        assert all(tries >= 2 for k, e, tries in rows if k in retried)
        return store.grades(judge.judge_id)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def test_judge_server_process_killed_mid_run_then_resumed(tmp_path):
    """A scripted judge process: some verdicts parse, some are junk; kill -9 it mid-run, restart, resume."""
    grades = kill_and_resume("fake", tmp_path, max_tokens=16)
    ok = {k for k, g in grades.items() if g.ok}
    assert len(ok) == 3 and all(grades[k].first_score == 85.0 for k in ok)
    junk = [g for g in grades.values() if not g.ok]
    assert all(g.raw == "Looks fine to me!" and 'no {"attempts"' in g.error for g in junk)


def test_openai_judge_against_tiny_model_server(tmp_path):
    """Our judge client speaks to our own server; a random-weight judge's junk reply is a recorded error."""
    from steerlab.serve import start_server
    from steerlab.testing.tiny import tiny_model

    judge_model = tiny_model("llama")
    judge_model.hf.config.max_position_embeddings = (
        4096  # the judge prompt is longer than the tiny config's 256 (RoPE runs on)
    )
    with start_server(judge_model, model_id="tiny-judge") as srv:
        judge = make_judge("openai", "tiny-judge", srv.url, "", max_tokens=8)
        judge.check()
        grades = judge.grade_many([GradeRequest("How do you boil an egg?", "Put it in boiling water.")])
    assert not grades[0].ok and grades[0].raw and grades[0].judge_id == f"openai:tiny-judge@{srv.url}"


@pytest.mark.real
def test_openai_judge_against_steerlab_serve_smollm2_killed_mid_run(tmp_path, monkeypatch):
    """`steerlab serve smollm2-135m-instruct` (with a key) as the judge: a poor judge whose junk replies
    exercise the parser for real; the server is SIGKILLed mid-run, restarted, and the run resumed."""
    monkeypatch.setenv("STEERLAB_TEST_SERVE_KEY", "serve-secret-123")
    grades = kill_and_resume(
        "cli:smollm2-135m-instruct",
        tmp_path,
        max_tokens=16,
        responses=RESPONSES[:2],
        start_timeout=180,
        key_env="STEERLAB_TEST_SERVE_KEY",
        chunk=1,
    )
    assert len(grades) == 2
    for g in grades.values():  # whatever the poor judge said is on record, verbatim, and the key is nowhere
        assert g.ok or (g.raw and g.error)
        assert "serve-secret-123" not in json.dumps(g.to_dict())
    errors = [g.error for g in grades.values() if not g.ok]
    print(f"SmolLM2 as judge: {len(grades) - len(errors)} parsed, {len(errors)} malformed; e.g. {errors[:1]}")


def test_cli_bad_judge_input_exits_2_with_one_sentence():
    """Unknown judge, unreachable server, wrong key: one line on stderr and exit code 2, no work done."""
    from fake_llm_server import FakeLLMServer

    exe = str(Path(sys.executable).with_name("steerlab"))
    base = [exe, "judge", "grade", "-p", "q", "-r", "a"]

    def script(path, body, headers):
        if headers.get("authorization") != "Bearer right-key":
            return 401, {"error": {"message": "Incorrect API key provided"}}, None
        return 200, {"data": [{"id": "m"}]}, None

    with FakeLLMServer(script) as srv:
        cases = [
            (["--judge", "gpt9"], "Unknown judge 'gpt9'"),
            (
                ["--judge", "openai", "--judge-model", "m", "--judge-url", "http://127.0.0.1:9/v1", "--retries", "0"],
                "Cannot reach the judge server",
            ),
            (
                [
                    "--judge",
                    "openai",
                    "--judge-model",
                    "m",
                    "--judge-url",
                    srv.url,
                    "--judge-key-env",
                    "STEERLAB_WRONG",
                ],
                "rejected the API key",
            ),
        ]
        for args, needle in cases:
            r = subprocess.run(
                base + args, capture_output=True, text=True, env={**os.environ, "STEERLAB_WRONG": "wrong-key"}
            )
            assert r.returncode == 2 and needle in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
        assert not srv.posts()  # nothing was graded
