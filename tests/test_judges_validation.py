"""The judge-validation set: held-out phrasings really held out, rows well formed, metrics right on known answers,
and `steerlab judge validate` over HTTP (OpenAI-compatible and Anthropic shapes) against the fake server."""

import json
import re

import pytest
import typer
from typer.testing import CliRunner

from fake_llm_server import FakeLLMServer, chat_reply
from steerlab.cli import judge_commands
from steerlab.errors import SteerlabError
from steerlab.judges import restart_data
from steerlab.judges.backends import AnthropicBackend, OpenAIBackend
from steerlab.judges.calibration import ON_TOPIC, UNRELATED
from steerlab.judges.http import RetryPolicy
from steerlab.judges.llm import LLMJudge
from steerlab.judges.restarts import restart_positions
from steerlab.judges.types import Attempt, Grade
from steerlab.judges.validation import build_set, check_row, load_set, score_rows, validate, write_set
from steerlab.judges.validation.heldout import HELDOUT_RESTARTS
from steerlab.judges.validation.material import PROMPTS
from steerlab.judges.validation.material import UNRELATED as VAL_UNRELATED


def words4(text):
    w = re.findall(r"[a-z']+", text.lower())
    return {tuple(w[i : i + 4]) for i in range(len(w) - 3)}


def test_heldout_phrasings_are_disjoint_from_everything_the_judge_knows():
    import inspect

    from steerlab.judges import heuristic, restart_probe, restarts

    judge_text = restart_data.RESTARTS + restart_data.META_NEUTRAL + restart_data.ORDINARY
    judge_text += tuple(s for _, steps in restart_data.TOPICS for s in steps) + tuple(
        s for o in restart_data.OFF_TOPIC for s in o
    )
    known = set().union(*(words4(t) for t in judge_text))
    code = "".join(inspect.getsource(m) for m in (heuristic, restart_probe, restarts, restart_data)).lower()
    for phrase in HELDOUT_RESTARTS:
        assert not restart_positions(phrase) and not restart_positions("Lava is hot. " + phrase), (
            phrase
        )  # not on the list
        assert not words4(phrase) & known, (phrase, words4(phrase) & known)  # no 4-word sequence in the probe's data
        assert phrase.lower() not in code
    assert len(set(HELDOUT_RESTARTS)) == len(HELDOUT_RESTARTS) >= 40
    # Nor do the set's answers reuse the probe's or the calibration's sentences.
    val_sentences = {s for _, steps, o in PROMPTS for s in (*steps, o)} | {s for u in VAL_UNRELATED for s in u}
    seen = set(judge_text) | {a for _, a in ON_TOPIC} | set(UNRELATED)
    assert not val_sentences & seen


def test_packaged_set_is_several_hundred_well_formed_rows():
    rows = build_set()
    assert rows == build_set()  # deterministic
    assert len(rows) >= 400 and len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        check_row(r, r["id"])
    cats = {}
    for r in rows:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    assert set(cats) == {
        "on_topic",
        "off_topic",
        "degenerate",
        "on_then_loop",
        "ordinary",
        "restart_better",
        "restart_worse",
        "restart_three",
    }
    assert {r["attempts"] for r in rows} == {1, 2, 3}
    used = {x["phrase"] for r in rows for x in r["restarts"]}
    assert used == set(HELDOUT_RESTARTS)
    ordinary = [r for r in rows if r["category"] == "ordinary"]
    assert all(re.search(r"\b(wait|again|start over)\b", r["response"], re.I) for r in ordinary)


def oracle_grades(rows, split=True, split_singles=False):
    """Grades a perfect judge (or a broken one) would give."""
    out = []
    for r in rows:
        cuts = [x["start"] for x in r["restarts"]] if split else []
        if split_singles and r["attempts"] == 1:
            cuts = [len(r["response"]) // 2]
        bounds = [0, *cuts, len(r["response"])]
        texts = [r["response"][a:b].strip() for a, b in zip(bounds, bounds[1:])]
        scores = r["scores"] if len(texts) == r["attempts"] else [r["scores"][0]] * len(texts)
        out.append(Grade(tuple(Attempt(t, s) for t, s in zip(texts, scores))))
    return out


def test_metrics_on_known_answers():
    rows = build_set()
    perfect = score_rows(rows, oracle_grades(rows))
    assert (
        perfect["attempt_accuracy"] == 1.0 and perfect["restart_recall"] == 1.0 and perfect["false_restart_rate"] == 0.0
    )
    assert perfect["first_score_r"] == 1.0 and perfect["attempt_score_r"] == 1.0 and perfect["missed_phrasings"] == []
    blind = score_rows(rows, oracle_grades(rows, split=False))
    singles = sum(r["attempts"] == 1 for r in rows)
    assert blind["restart_recall"] == 0.0 and blind["attempt_accuracy"] == pytest.approx(singles / len(rows), abs=1e-4)
    assert set(blind["missed_phrasings"]) == set(HELDOUT_RESTARTS)
    jumpy = score_rows(rows, oracle_grades(rows, split_singles=True))
    assert jumpy["false_restart_rate"] == 1.0 and len(jumpy["false_restarts"]) == singles
    failed = score_rows(rows[:3], [Grade.failed("boom")] * 3)
    assert failed["errors"] == 3 and failed["attempt_accuracy"] == 0.0


def test_abridged_attempt_texts_fall_back_to_the_count():
    row = next(r for r in build_set() if r["attempts"] == 2)
    grade = Grade((Attempt("first part ...", 0.0), Attempt("[abridged]", 100.0)))
    assert score_rows([row], [grade])["restart_recall"] == 1.0


@pytest.mark.parametrize(
    "line,needle",
    [
        ("not json", "Line 2 of"),
        ('{"id": "x"}', "has no 'category' field"),
        (
            '{"id": "x", "category": "c", "prompt": "p", "response": "r", "attempts": 2, "scores": [1], "restarts": []}',
            "one number per attempt",
        ),
        (
            '{"id": "x", "category": "c", "prompt": "p", "response": "r", "attempts": 1, "scores": [101], "restarts": []}',
            "from 0 to 100",
        ),
        (
            '{"id": "x", "category": "c", "prompt": "p", "response": "ab", "attempts": 2, "scores": [0, 9], "restarts": [{"start": 0, "phrase": "zz"}]}',
            "found at that position",
        ),
    ],
)
def test_malformed_rows_are_one_sentence(tmp_path, line, needle):
    path = tmp_path / "set.jsonl"
    good = json.dumps(build_set()[0])
    path.write_text(good + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SteerlabError, match=re.escape(needle)) as info:
        load_set(path)
    assert "\n" not in str(info.value)


def test_write_then_load_round_trips(tmp_path):
    rows = build_set()[:20]
    assert load_set(write_set(rows, tmp_path / "v.jsonl")) == rows


def oracle_script(rows, shape="openai"):
    """A fake LLM judge that reads the fenced response and answers with the row's true attempts."""
    by_response = {r["response"]: r for r in rows}

    def script(path, body, headers):
        if path.endswith("/models"):
            return 200, {"data": [{"id": "judge-20250101"}]}, None
        text = body["messages"][-1]["content"]
        response = text.split("=== RESPONSE ===\n", 1)[1].split("\n=== END RESPONSE ===", 1)[0]
        row = by_response[response]
        bounds = [0, *[x["start"] for x in row["restarts"]], len(response)]
        attempts = [
            {"attempt_text": response[a:b].strip(), "score": s}
            for (a, b), s in zip(zip(bounds, bounds[1:]), row["scores"])
        ]
        reply = "Feedback.\n<json>" + json.dumps({"attempts": attempts}) + "</json>"
        if shape == "anthropic":
            return 200, {"content": [{"type": "text", "text": reply}]}, None
        return 200, chat_reply(reply), None

    return script


@pytest.mark.parametrize("shape", ["openai", "anthropic"])
def test_validate_an_llm_judge_over_http(monkeypatch, shape):
    monkeypatch.setenv("STEERLAB_TEST_KEY", "sk-test-" + "a1" * 12)
    rows = build_set()[::12]
    with FakeLLMServer(oracle_script(rows, shape)) as srv:
        cls, url = (OpenAIBackend, srv.url) if shape == "openai" else (AnthropicBackend, srv.root)
        judge = LLMJudge(
            cls("judge-20250101", url, "STEERLAB_TEST_KEY", retry=RetryPolicy(max_retries=0)), concurrency=4
        )
        report = validate(judge, rows)
        sent = srv.posts()[0]["body"]
    assert report["errors"] == 0 and report["attempt_accuracy"] == 1.0 and report["restart_recall"] == 1.0
    assert report["false_restart_rate"] == 0.0 and report["rubric"] == "esr-faithful-v1"
    assert "temperature" not in sent


@pytest.fixture()
def app(monkeypatch, tmp_path):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    root = typer.Typer()
    judge_commands.register(root)
    return root


def test_cli_validate_against_an_openai_compatible_server(app, tmp_path):
    rows = build_set()[::20]
    set_file = write_set(rows, tmp_path / "small.jsonl")
    with FakeLLMServer(oracle_script(rows)) as srv:
        result = CliRunner().invoke(
            app,
            [
                "judge",
                "validate",
                "--judge",
                "openai",
                "--judge-model",
                "judge-20250101",
                "--judge-url",
                srv.url,
                "--set",
                str(set_file),
                "--out",
                str(tmp_path / "report.json"),
                "--judge-temperature",
                "0",
            ],
        )
        assert result.exit_code == 0, result.output
        assert srv.posts()[0]["body"]["temperature"] == 0.0
    assert "attempt_accuracy" in result.output and "1.000" in result.output
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["n"] == len(rows) and report["restart_recall"] == 1.0 and report["judge"].endswith("?temperature=0")


def test_cli_bad_input_is_one_sentence(app, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n', encoding="utf-8")
    runner = CliRunner()
    for args, needle in [
        (["judge", "validate", "--set", str(bad)], "'id' must be a str"),
        (["judge", "validate", "--set", str(tmp_path / "none.jsonl")], "No validation set at"),
        (["judge", "grade", "-p", "q", "-r", "a", "--rubric", "fancy"], "Unknown rubric 'fancy'"),
        (["judge", "validate", "--rubric", "fancy", "--limit", "1"], "Unknown rubric 'fancy'"),
    ]:
        result = runner.invoke(app, args)
        assert isinstance(result.exception, SteerlabError), (args, result.output)
        assert needle in str(result.exception) and "\n" not in str(result.exception)


def test_cli_exit_code_2_for_a_malformed_set(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text("{broken\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "steerlab", "judge", "validate", "--set", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: Line 1 of {bad} is not valid JSON."
