"""The judge and store CLI commands, in process, against a scripted judge server on 127.0.0.1."""

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from fake_llm_server import FakeLLMServer, attempts_json, chat_reply
from steerlab.cli import judge_commands, serve_commands, store_commands
from steerlab.errors import SteerlabError
from steerlab.store import RunStore, Trial

PAIRS = [
    ("How do you make an omelette?", "Whisk eggs. No, wait! Lava."),
    ("Explain how to fold a sheet.", "Tuck the corners."),
    ("How do you iron a shirt?", "Collar first."),
    ("Explain how to compost.", "Volcanoes."),
]


@pytest.fixture()
def app(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    root = typer.Typer()
    judge_commands.register(root)
    store_commands.register(root)
    serve_commands.register(root)
    return root


@pytest.fixture()
def run_dir(tmp_path):
    store = RunStore(tmp_path / "run", {"experiment": "cli"})
    trials = [Trial("steered", p, seed=i, latent=i, strength=3.0, label="volcanoes") for i, (p, _) in enumerate(PAIRS)]
    store.add_trials(trials)
    store.put_generations([(t.key, r, [1], "eos", None) for t, (_, r) in zip(trials, PAIRS)])
    store.close()
    return tmp_path / "run"


def scripted(scores_by_word):
    def script(path, body, headers):
        if path.endswith("/models"):
            return 200, {"data": [{"id": "judge-a"}, {"id": "judge-b"}]}, None
        text = re.split(r"=== (?:ANSWER TO GRADE|RESPONSE) ===", body["messages"][-1]["content"])[1]
        for word, scores in scores_by_word.items():
            if word in text:
                return 200, chat_reply(attempts_json(*scores)), None
        return 200, chat_reply("no verdict"), None

    return script


def test_judge_run_then_compare_then_export(app, run_dir, tmp_path):
    runner = CliRunner()
    a = {"Whisk": (80, 10), "Tuck": (90,), "Collar": (70,), "Volcanoes": (5,)}
    b = {"Whisk": (70, 20), "Tuck": (95,), "Collar": (60,)}  # no verdict on the compost answer
    with FakeLLMServer(scripted(a)) as srv_a, FakeLLMServer(scripted(b)) as srv_b:
        result = runner.invoke(
            app,
            ["judge", "run", str(run_dir), "--judge", "openai", "--judge-model", "judge-a", "--judge-url", srv_a.url],
        )
        assert result.exit_code == 0, result.output
        assert "4 graded, 0 errors" in result.output
        again = runner.invoke(
            app,
            ["judge", "run", str(run_dir), "--judge", "openai", "--judge-model", "judge-a", "--judge-url", srv_a.url],
        )
        assert "0 graded, 0 errors (of 0 to do)" in again.output and len(srv_a.posts()) == 4
        result = runner.invoke(
            app,
            [
                "judge",
                "compare",
                str(run_dir),
                "--judge",
                "openai",
                "--judge-model",
                "judge-b",
                "--judge-url",
                srv_b.url,
            ],
        )
        assert result.exit_code == 0, result.output
    assert "3 newly graded, 1 errors" in result.output
    stats = json.loads(result.output[result.output.index("{") :])
    assert stats["n_pairs"] == 3 and stats["n_skipped"] == 1 and stats["multi_attempt_agreement"] == 1.0
    assert stats["direction_agreement"] == 1.0 and stats["pearson_first"] > 0.9
    store = RunStore(run_dir, create=False)
    pinned = store.meta("judge:")
    assert {v["model"] for v in pinned.values()} == {"judge-a", "judge-b"} and all(
        v["temperature"] is None and v["rubric"] == "faithful" for v in pinned.values()
    )
    out = tmp_path / "x.jsonl"
    result = runner.invoke(app, ["store", "export", str(run_dir), "--format", "jsonl", "--out", str(out)])
    assert result.exit_code == 0 and "wrote 4 rows" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows[0]["grades"]) == 2 and rows[3]["grades"][0]["first_score"] == 5.0
    shown = runner.invoke(app, ["store", "show", str(run_dir)])
    assert '"trials": 4' in shown.output and '"grade_errors": 1' in shown.output


def test_compare_needs_a_second_judge(app, run_dir):
    with FakeLLMServer(scripted({})) as srv:
        result = CliRunner().invoke(
            app,
            ["judge", "compare", str(run_dir), "--judge", "openai", "--judge-model", "judge-a", "--judge-url", srv.url],
        )
    assert isinstance(result.exception, SteerlabError) and "no grades from another judge" in str(result.exception)


def test_bad_inputs_raise_one_sentence(app, run_dir, tmp_path):
    runner = CliRunner()
    cases = [
        (["store", "export", str(run_dir), "--format", "csv"], "Unknown export format 'csv'"),
        (["store", "show", str(tmp_path / "missing")], "No run store at"),
        (["judge", "grade", "-p", "q"], "exactly one of --response or --response-file"),
        (["judge", "grade", "-p", "q", "--response-file", str(tmp_path / "nope.txt")], "response file"),
        (["serve", "tiny", "--steer", "bogus"], "Malformed --steer"),
        (["serve", "tiny", "--steer-file", str(tmp_path / "nope.json")], "steering file"),
        (["serve", "tiny", "--api-key-env", "STEERLAB_SURELY_UNSET_VAR"], "is not set"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, SteerlabError), (args, result.output)
        assert needle in str(result.exception) and "\n" not in str(result.exception)


def test_help_for_every_command(app):
    for args in (
        ["judge", "--help"],
        ["judge", "grade", "--help"],
        ["judge", "run", "--help"],
        ["judge", "compare", "--help"],
        ["judge", "calibrate", "--help"],
        ["store", "export", "--help"],
        ["store", "show", "--help"],
        ["serve", "--help"],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output
