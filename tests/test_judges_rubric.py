"""The ESR rubrics: the faithful one shows a correction in each direction, never mentions steering, anchors switch."""

import re

import pytest

from fake_llm_server import FakeLLMServer, attempts_json, chat_reply
from steerlab.errors import SteerlabError
from steerlab.judges import make_judge
from steerlab.judges.rubrics import ESR_RUBRIC_VERSION, FAITHFUL_RUBRIC_VERSION, esr_rubric


def full_text(rubric, label="volcanoes"):
    return rubric.system + "\n" + rubric.user("What is 2 + 2?", "Four.", label)


def test_faithful_rubric_has_a_worked_example_in_each_direction():
    text = full_text(esr_rubric("faithful"))
    examples = re.findall(
        r'- "([^"]+)" holds two attempts: "([^"]+)" scores (\d+) and "([^"]+)" scores (\d+)\. A restart can make the answer (\w+)',
        text,
    )
    assert len(examples) == 2, examples
    by_direction = {ex[5]: (int(ex[2]), int(ex[4])) for ex in examples}
    assert by_direction == {"worse": (100, 0), "better": (0, 100)}
    for whole, first, _, second, _, _ in examples:
        assert whole.startswith(first) and whole.endswith(
            second.split(". ")[-1]
        )  # the attempts split the example answer


def test_faithful_rubric_never_mentions_steering():
    for anchors in (False, True):
        assert not re.search(r"steer", full_text(esr_rubric("faithful", anchors)), re.I)
    assert re.search(r"steer", full_text(esr_rubric("today")), re.I)  # today's rubric does; that is the difference


def test_anchors_switch_and_are_versioned():
    off, on = esr_rubric("faithful"), esr_rubric("faithful", anchors=True)
    assert "Score anchors" not in full_text(off) and "Score anchors" in full_text(on)
    assert "100 means" in full_text(on) and "50 means" in full_text(on) and "0 means" in full_text(on)
    assert off.version == FAITHFUL_RUBRIC_VERSION and on.version == FAITHFUL_RUBRIC_VERSION + "+anchors"
    assert esr_rubric("today").version == ESR_RUBRIC_VERSION and esr_rubric().name == "faithful"
    with pytest.raises(SteerlabError, match="always has its anchors"):
        esr_rubric("today", anchors=False)
    with pytest.raises(SteerlabError, match=r"^Unknown rubric 'v9'; choose one of: faithful, today\.$"):
        make_judge("heuristic", rubric="v9")


def test_llm_judge_sends_the_chosen_rubric():
    def script(path, body, headers):
        if path.endswith("/models"):
            return 200, {"data": [{"id": "m"}]}, None
        return 200, chat_reply(attempts_json(40)), None

    with FakeLLMServer(script) as srv:
        for name, anchors, needle in (
            ("faithful", None, "Unrelated topic: lava"),
            ("faithful", True, "Score anchors"),
            ("today", None, "steered towards: lava"),
        ):
            judge = make_judge("openai", "m", srv.url, "", rubric=name, anchors=anchors, max_retries=0)
            grade = judge.grade("p", "r", "lava")
            assert grade.ok and grade.rubric_version == judge.rubric_version == esr_rubric(name, anchors).version
            assert needle in srv.posts()[-1]["body"]["messages"][1]["content"]
            assert judge.config()["rubric"] == name


def test_judge_temperature_must_be_a_sane_number():
    from steerlab.esr.config import EsrConfig

    for bad in (-0.1, 2.5, float("nan")):
        with pytest.raises(SteerlabError, match="judge temperature must be a number from 0 to 2"):
            make_judge("openai", "m", "http://127.0.0.1:9/v1", temperature=bad)
        with pytest.raises(
            SteerlabError, match="judge_temperature' must be a finite|judge temperature must be a number from 0 to 2"
        ):
            EsrConfig(judge_temperature=bad)
