"""LLM judge clients against scripted fake servers on 127.0.0.1: retries, limits, keys, bad input."""

import json
import time

import pytest

from fake_llm_server import FakeLLMServer, attempts_json, chat_reply
from steerlab.errors import SteerlabError
from steerlab.judges import GradeRequest, make_judge
from steerlab.judges.backends import AnthropicBackend, OpenAIBackend
from steerlab.judges.http import RetryPolicy
from steerlab.judges.llm import LLMJudge

SECRET = "sk-test-" + "x7Qp2" * 6  # a fake key; it must never show up anywhere but the request header
MODEL = "judge-model-20250101"


def models_ok(path, body, headers):
    return 200, {"data": [{"id": MODEL}]}, None


def fast(backend_cls=OpenAIBackend, url=None, **kw):
    kw.setdefault("retry", RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05))
    return backend_cls(MODEL, url, "STEERLAB_TEST_KEY", **kw)


def test_openai_judge_grades_and_sends_pinned_model_and_no_temperature_by_default(monkeypatch):
    monkeypatch.setenv("STEERLAB_TEST_KEY", SECRET)

    def script(path, body, headers):
        if path.endswith("/models"):
            return models_ok(path, body, headers)
        return 200, chat_reply(attempts_json(20, 90)), None

    with FakeLLMServer(script) as srv:
        judge = LLMJudge(fast(url=srv.url))
        judge.check()
        grade = judge.grade("How do you fold a sheet?", "Lava. No, wait! Tuck the corners.", "volcanoes")
        assert grade.ok and [a.score for a in grade.attempts] == [20.0, 90.0] and grade.improved
        post = srv.posts()[0]
        assert post["path"] == "/v1/chat/completions"
        assert (
            post["body"]["model"] == MODEL and "temperature" not in post["body"]
        )  # the provider's default, as the original
        assert "volcanoes" in post["body"]["messages"][1]["content"]
        hot = LLMJudge(fast(url=srv.url, temperature=0.0))
        assert hot.grade("p", "r").ok and srv.posts()[-1]["body"]["temperature"] == 0.0
        assert hot.judge_id.endswith("?temperature=0") and hot.judge_id != judge.judge_id  # part of every grade key
        assert post["headers"]["authorization"] == f"Bearer {SECRET}"
        # The key lives only in the header: not in repr, config, the grade or its id.
        for text in (
            repr(judge),
            repr(judge.backend),
            json.dumps(judge.config()),
            json.dumps(grade.to_dict()),
            judge.judge_id,
        ):
            assert SECRET not in text


def test_retries_on_429_and_5xx_then_succeeds():
    replies = [
        (429, {"error": {"message": "slow down"}}, {"Retry-After": "0.01"}),
        (503, {"error": "busy"}, None),
        (200, chat_reply(attempts_json(77)), None),
    ]

    with FakeLLMServer(lambda *a: replies.pop(0)) as srv:
        grade = LLMJudge(fast(url=srv.url)).grade("p", "r")
        assert grade.ok and grade.first_score == 77.0
        assert len(srv.posts()) == 3


def test_retries_on_timeout():
    calls = []

    def script(path, body, headers):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.6)  # longer than the client timeout
        return 200, chat_reply(attempts_json(50)), None

    with FakeLLMServer(script) as srv:
        grade = LLMJudge(fast(url=srv.url, timeout=0.3)).grade("p", "r")
        assert grade.ok and len(calls) == 2


def test_persistent_5xx_is_a_recorded_error_not_an_exception():
    with FakeLLMServer(lambda *a: (500, {"error": {"message": "boom"}}, None)) as srv:
        grade = LLMJudge(fast(url=srv.url)).grade("p", "r")
        assert not grade.ok and "500" in grade.error and grade.attempts == ()
        assert len(srv.posts()) == 4  # 1 try + 3 retries


def test_401_is_not_retried():
    with FakeLLMServer(lambda *a: (401, {"error": {"message": "bad key"}}, None)) as srv:
        grade = LLMJudge(fast(url=srv.url)).grade("p", "r")
        assert not grade.ok and "401" in grade.error and len(srv.posts()) == 1


def test_malformed_reply_is_recorded_with_raw_text():
    with FakeLLMServer(lambda *a: (200, chat_reply("I liked it. 8/10"), None)) as srv:
        grade = LLMJudge(fast(url=srv.url)).grade("p", "r")
        assert not grade.ok and grade.raw == "I liked it. 8/10"


def test_bounded_concurrency():
    with FakeLLMServer(lambda *a: (200, chat_reply(attempts_json(60)), None), delay=0.3) as srv:
        judge = LLMJudge(fast(url=srv.url), concurrency=3)
        grades = judge.grade_many([GradeRequest(f"p{i}", "r") for i in range(9)])
        assert all(g.ok for g in grades)
        assert srv.max_in_flight == 3


def test_rate_limit_spaces_request_starts():
    with FakeLLMServer(lambda *a: (200, chat_reply(attempts_json(60)), None)) as srv:
        judge = LLMJudge(fast(url=srv.url, rate_per_s=20.0), concurrency=4)
        judge.grade_many([GradeRequest(f"p{i}", "r") for i in range(6)])
        starts = sorted(srv.start_times)
        assert starts[-1] - starts[0] > 0.2  # 6 starts at most 20/s span at least 0.25 s (minus slack)


def test_anthropic_backend_shape(monkeypatch):
    monkeypatch.setenv("STEERLAB_TEST_KEY", SECRET)

    def script(path, body, headers):
        if path == "/v1/models":
            return 200, {"data": []}, None
        return 200, {"content": [{"type": "text", "text": attempts_json(33)}]}, None

    with FakeLLMServer(script) as srv:
        judge = LLMJudge(fast(AnthropicBackend, url=srv.root))
        judge.check()
        grade = judge.grade("p", "r")
        assert grade.ok and grade.first_score == 33.0
        post = srv.posts()[0]
        assert post["path"] == "/v1/messages" and post["headers"]["x-api-key"] == SECRET
        assert post["body"]["system"] and "temperature" not in post["body"]
        assert SECRET not in repr(judge) + json.dumps(judge.config())


# --- bad input: one sentence each, from check(), before any work -------------------------------------


def test_unknown_judge_name():
    with pytest.raises(SteerlabError, match=r"Unknown judge 'gpt9'; choose one of"):
        make_judge("gpt9")


def test_missing_model_id():
    with pytest.raises(SteerlabError, match="full model id"):
        make_judge("openai", None, "http://127.0.0.1:9/v1")


def test_unreachable_server():
    judge = make_judge("openai", MODEL, "http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(SteerlabError, match=r"^Cannot reach the judge server at http://127.0.0.1:9/v1; start it"):
        judge.check()


def test_wrong_key(monkeypatch):
    monkeypatch.setenv("STEERLAB_TEST_KEY", "wrong-" + SECRET)

    def script(path, body, headers):
        ok = headers.get("authorization") == f"Bearer {SECRET}"
        return (
            (200, {"data": [{"id": MODEL}]}, None) if ok else (401, {"error": {"message": "Incorrect API key"}}, None)
        )

    with FakeLLMServer(script) as srv:
        judge = make_judge("openai", MODEL, srv.url, "STEERLAB_TEST_KEY")
        with pytest.raises(
            SteerlabError, match=r"rejected the API key \(HTTP 401\); set a valid key in \$STEERLAB_TEST_KEY"
        ) as info:
            judge.check()
        assert SECRET not in str(info.value)


def test_model_not_served():
    with FakeLLMServer(lambda *a: (200, {"data": [{"id": "other-model"}]}, None)) as srv:
        with pytest.raises(SteerlabError, match="does not serve model 'judge-model-20250101'; it serves: other-model"):
            make_judge("openai", MODEL, srv.url).check()


def test_anthropic_without_key(monkeypatch):
    monkeypatch.delenv("STEERLAB_NO_SUCH_KEY", raising=False)
    with pytest.raises(SteerlabError, match=r"needs an API key; set \$STEERLAB_NO_SUCH_KEY"):
        make_judge("anthropic", "claude-haiku-4-5-20251001", api_key_env="STEERLAB_NO_SUCH_KEY").check()


@pytest.mark.parametrize(
    "name,model,needle",
    [
        ("anthropic", "claude-haiku-4-5", "floating alias"),
        ("anthropic", "haiku", "floating alias"),
        ("openai", "gpt-4o-mini", "floating alias"),
    ],
)
def test_hosted_judges_need_pinned_model_ids(monkeypatch, name, model, needle):
    monkeypatch.setenv("STEERLAB_TEST_KEY", SECRET)
    with pytest.raises(SteerlabError, match=needle):
        make_judge(name, model, api_key_env="STEERLAB_TEST_KEY").check()


def test_server_error_that_echoes_the_key_is_redacted(monkeypatch):
    monkeypatch.setenv("STEERLAB_TEST_KEY", SECRET)
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET[:6]}***{SECRET[-4:]} (full: {SECRET})"}}
    with FakeLLMServer(lambda *a: (401, echo, None)) as srv:
        grade = LLMJudge(fast(url=srv.url)).grade("p", "r")
        with pytest.raises(SteerlabError) as info:
            make_judge("openai", MODEL, srv.url, "STEERLAB_TEST_KEY").check()
    for text in (grade.error, str(info.value)):
        assert "401" in text or "rejected" in text
        assert SECRET not in text and SECRET[-4:] + ")" not in text and SECRET[8:16] not in text
