"""The heuristic judge: score mapping, error capture, calibration separation, steered vs unsteered SmolLM2."""

import pytest
import torch

from steerlab.judges import GradeRequest
from steerlab.judges.heuristic import HIGH, LOW, HeuristicJudge, calibration_report, cosine_to_score


def test_cosine_to_score_is_monotone_and_clipped():
    assert cosine_to_score(LOW - 0.3) == 0.0 and cosine_to_score(HIGH + 0.3) == 100.0
    assert cosine_to_score((LOW + HIGH) / 2) == 50.0
    xs = [LOW + i * (HIGH - LOW) / 10 for i in range(11)]
    assert [cosine_to_score(x) for x in xs] == sorted(cosine_to_score(x) for x in xs)


class BrokenEmbedder:
    def embed(self, texts):
        raise RuntimeError("embedder exploded")


class KeywordEmbedder:
    """A stand-in embedder: a text's vector counts a few topic words, so relevance is predictable."""

    WORDS = ("egg", "sheet", "lava", "tire")

    def embed(self, texts):
        rows = [[t.lower().count(w) + 1e-3 for w in self.WORDS] for t in texts]
        return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def test_embedder_failure_is_recorded_on_every_item():
    judge = HeuristicJudge(embedder=BrokenEmbedder())
    grades = judge.grade_many([GradeRequest("p", "r"), GradeRequest("q", "s")])
    assert all(g.error == "RuntimeError: embedder exploded" for g in grades)
    assert judge.grade("p", "r").error == "RuntimeError: embedder exploded"


def test_attempts_are_scored_separately_with_the_restart_phrase_stripped():
    judge = HeuristicJudge(embedder=KeywordEmbedder(), restarts="phrases")
    grade = judge.grade(
        "How do you boil an egg?", "Lava flows downhill. No, wait! Put the egg in boiling water.", "lava"
    )
    assert [a.text for a in grade.attempts] == ["Lava flows downhill.", "No, wait! Put the egg in boiling water."]
    assert grade.attempts[0].score == 0.0 and grade.attempts[1].score == 100.0 and grade.improved
    assert judge.grade("How do you boil an egg?", "   ").attempts == ()


@pytest.mark.real
def test_calibration_separates_on_topic_from_off_topic():
    report = calibration_report()
    print("heuristic calibration:", {k: round(v, 3) for k, v in report.items()})
    assert report["auc"] == 1.0 and report["min_on"] > report["max_off"]
    assert report["mean_on"] > 85 and report["mean_off"] < 15


@pytest.mark.real
def test_real_embedder_scores_nonsense_low_and_keeps_it_as_an_attempt():
    judge = HeuristicJudge()
    prompt = "How do you make an omelette?"
    good = judge.grade(prompt, "Whisk three eggs, melt butter in a pan, pour in the eggs, fold and serve.")
    junk = judge.grade(prompt, "zxq vlorp snib snib snib")
    drift = judge.grade(
        prompt,
        "The Roman Empire built roads. Let me try again. Whisk eggs, cook them in butter and fold.",
        "Roman history",
    )
    assert good.first_score >= 60 and junk.n_attempts == 1 and junk.first_score <= 20
    assert (
        drift.n_attempts == 2
        and drift.first_score < 30
        and drift.last_score > drift.first_score + 40
        and drift.improved
    )


VOLCANO = [
    "Volcanoes erupt with hot lava and ash.",
    "Magma rises from deep inside the earth through the volcano.",
    "The volcano spewed lava over the village.",
    "Lava flows glowed red down the volcanic mountain.",
    "Mount Etna is an active volcano in Sicily.",
    "The eruption sent ash clouds high into the sky.",
]
NEUTRAL = [
    "The meeting is scheduled for Tuesday morning.",
    "She put the groceries on the kitchen table.",
    "The report summarises last quarter results.",
    "He walked the dog around the block.",
    "The library opens at nine on weekdays.",
    "They painted the fence white last summer.",
]
PROMPTS = [
    "How do you make an omelette?",
    "Explain how to fold a fitted sheet.",
    "How do you calculate compound interest?",
    "Explain how to write a thank-you note.",
    "How do you iron a dress shirt?",
    "Explain how to compost kitchen scraps.",
]


@pytest.mark.real
def test_unsteered_smollm2_scores_clearly_higher_than_steered(smollm):
    import steerlab
    from steerlab.vectors import train_vector

    vector = train_vector(smollm, VOLCANO, NEUTRAL, layer=8, chat=False, label="volcanoes")
    plain = steerlab.generate(smollm, PROMPTS, max_new_tokens=32)
    steered = steerlab.generate(smollm, PROMPTS, [vector.steer(5.0)], max_new_tokens=32)
    judge = HeuristicJudge()
    first = {}
    for name, gens in (("unsteered", plain), ("steered", steered)):
        grades = judge.grade_many([GradeRequest(p, g.text, "volcanoes") for p, g in zip(PROMPTS, gens)])
        scores = [g.first_score if g.attempts else 0.0 for g in grades]  # a reply with no attempt counts as 0 here
        first[name] = sum(scores) / len(scores)
    gap = first["unsteered"] - first["steered"]
    print(
        f"heuristic first-attempt mean: unsteered {first['unsteered']:.1f}, steered {first['steered']:.1f}, gap {gap:.1f}"
    )
    assert first["unsteered"] >= 80 and gap >= 25
