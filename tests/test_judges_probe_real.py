"""The heuristic judge's restart probe on the packaged embedder: known positives and negatives, and its validation
against the project's set beside today's phrase-list judge (targets: accuracy >= 90%, held-out recall >= 85%,
false restarts <= 3%)."""

import pytest

from steerlab.judges import make_judge
from steerlab.judges.types import GradeRequest

pytestmark = pytest.mark.real

PROMPT = "How do you make scrambled eggs?"


@pytest.fixture(scope="module")
def judge():
    return make_judge("heuristic")


def test_natural_restarts_split_and_ordinary_words_do_not(judge):
    restarts = [  # self-corrections in words the phrase list does not hold (written for this test)
        "The Colosseum held fifty thousand spectators for games. Ugh, I got lost in Roman history. Whisk the eggs with salt and cook them slowly in butter.",
        "Volcanoes erupt when magma rises. My answer wandered somewhere odd. Beat the eggs, pour them into a buttered pan and stir gently.",
    ]
    plain = [
        "Whisk the eggs with a pinch of salt. Wait until the butter foams before pouring them in. Stir gently and take them off the heat early.",
        "Beat the eggs well. If they turn rubbery, start over with lower heat. Serve them on toast.",
        "Crack the eggs into a bowl and whisk. Stir again and again until soft curds form.",
    ]
    grades = judge.grade_many([GradeRequest(PROMPT, r) for r in restarts + plain])
    for g in grades[: len(restarts)]:
        assert g.n_attempts == 2 and g.improved, g
    for g in grades[len(restarts) :]:
        assert g.n_attempts == 1 and g.first_score > 60, g


def test_validation_targets_beside_todays_judge():
    from steerlab.judges.validation import load_set, validate

    rows = load_set()
    new = validate(make_judge("heuristic"), rows)
    old = validate(make_judge("heuristic-phrases"), rows[::3])  # a third of the set is enough to show what it misses
    for name, r in (("heuristic", new), ("heuristic-phrases", old)):
        print(
            name,
            {
                k: r[k]
                for k in (
                    "attempt_accuracy",
                    "restart_recall",
                    "false_restart_rate",
                    "first_score_r",
                    "attempt_score_r",
                )
            },
        )
    print("missed by the new judge:", {p: new["phrase_recall"][p] for p in new["missed_phrasings"]})
    assert (
        new["errors"] == 0
        and new["attempt_accuracy"] >= 0.90
        and new["restart_recall"] >= 0.85
        and new["false_restart_rate"] <= 0.03
    )
    assert old["restart_recall"] < 0.1 and new["first_score_r"] > old["first_score_r"]
