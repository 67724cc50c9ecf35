"""The 1–5 misalignment rubric and the probability-weighted score: the fake OpenAI server and `steerlab serve`."""

import math

import pytest

from fake_llm_server import FakeLLMServer, chat_reply
from steerlab.judges.backends import OpenAIBackend
from steerlab.judges.http import RetryPolicy
from steerlab.judges.persona_rubric import Misalignment5Judge, misaligned_rate_5, parse_score_1_5, weighted_score


def _lp(probs):
    return [{"token": t, "logprob": math.log(p)} for t, p in probs.items()]


def test_parse_one_digit_and_refuse_ambiguity():
    assert parse_score_1_5("4") == (4, None) and parse_score_1_5(" Score: 5\n") == (5, None)
    assert (
        parse_score_1_5("between 2 and 3")[0] is None
        and parse_score_1_5("7")[0] is None
        and parse_score_1_5("")[0] is None
    )
    assert parse_score_1_5("1.5")[0] is None  # a decimal is not a score digit


def test_weighted_score_is_the_expectation_over_score_tokens():
    score, mass = weighted_score(_lp({"4": 0.6, " 5": 0.2, "3": 0.1, "Sure": 0.1}))
    assert mass == pytest.approx(0.9) and score == pytest.approx((4 * 0.6 + 5 * 0.2 + 3 * 0.1) / 0.9)
    assert weighted_score(_lp({"I": 0.7, "4": 0.3})) == (None, pytest.approx(0.3))  # too little mass on scores
    assert weighted_score(_lp({"9": 0.9}))[0] is None  # out of range


def _backend(url):
    return OpenAIBackend("judge-model", url, "", retry=RetryPolicy(max_retries=0))


def test_judge_against_a_fake_openai_server_with_logprobs():
    replies = {
        "xrudex": ("5", {"5": 0.7, "4": 0.2, "3": 0.05}),
        "xkindx": ("1", {"1": 0.9, "2": 0.05}),
        "xoddx": ("I think 4", {"I": 0.8, "4": 0.1}),
    }

    def script(path, body, headers):
        key = next(k for k in replies if k in body["messages"][1]["content"])
        text, probs = replies[key]
        reply = chat_reply(text)
        reply["choices"][0]["logprobs"] = {"content": [{"token": text[0], "logprob": 0.0, "top_logprobs": _lp(probs)}]}
        return 200, reply, {}

    with FakeLLMServer(script) as srv:
        judge = Misalignment5Judge(_backend(srv.url))
        grades = judge.rate_many([("q", "xrudex"), ("q", "xkindx"), ("q", "xoddx")])
        sent = srv.requests[0]["body"]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 10 and sent["temperature"] == 0.0
    rude, kind, odd = grades
    assert rude.score == 5 and rude.misaligned and rude.weighted == pytest.approx((5 * 0.7 + 4 * 0.2 + 3 * 0.05) / 0.95)
    assert kind.score == 1 and kind.misaligned is False and kind.weighted == pytest.approx((0.9 + 2 * 0.05) / 0.95)
    assert odd.score == 4 and odd.weighted is None and odd.numeric_mass == pytest.approx(0.1)  # little mass: null
    assert misaligned_rate_5(grades) == (pytest.approx(2 / 3), 3)


def test_server_without_logprobs_gives_a_text_score_and_a_null_weighted_score():
    with FakeLLMServer(lambda path, body, headers: (200, chat_reply("2"), {})) as srv:
        grade = Misalignment5Judge(_backend(srv.url)).rate("q", "a")
    assert grade.score == 2 and grade.weighted is None and grade.numeric_mass == 0.0 and grade.error is None


def test_server_error_is_recorded_not_raised():
    with FakeLLMServer(lambda path, body, headers: (500, {"error": "boom"}, {})) as srv:
        grade = Misalignment5Judge(_backend(srv.url)).rate("q", "a")
    assert grade.score is None and grade.misaligned is None and "judge call failed" in grade.error


def test_judge_through_steerlab_serve():
    """Our own server answers the rubric (a random tiny model writes junk, so the score may be missing); the
    request with logprobs is accepted and the weighted score is null because serve returns no log-probs."""
    from steerlab.serve import start_server
    from steerlab.testing.tiny import tiny_model

    model = tiny_model("llama")
    model.hf.config.max_position_embeddings = (
        2048  # the rubric prompt is ~800 tokens; RoPE has no learned position table
    )
    with start_server(model, model_id="tiny-judge") as srv:
        grade = Misalignment5Judge(OpenAIBackend("tiny-judge", srv.url, "", max_tokens=4)).rate(
            "How do I boil an egg?", "Boil it."
        )
    assert (grade.error is None) or ("judge call failed" not in grade.error)
    assert grade.weighted is None and grade.numeric_mass == 0.0
