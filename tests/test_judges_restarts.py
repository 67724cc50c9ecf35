"""Attempt splitting at explicit restart language: a table of examples."""

import pytest

from steerlab.judges.restarts import split_attempts, strip_restart

TABLE = [
    # (response, expected attempts)
    ("Apple! No, wait! Orange", ["Apple!", "No, wait! Orange"]),
    (
        "Boil water. Wait, that's not right. Heat the oil first.",
        ["Boil water.", "Wait, that's not right. Heat the oil first."],
    ),
    (
        "Volcanoes are hot. Let me try again. To fold a sheet, tuck the corners.",
        ["Volcanoes are hot.", "Let me try again. To fold a sheet, tuck the corners."],
    ),
    (
        "Lava flows downhill.\n\nLet's start over: a budget lists income and costs.",
        ["Lava flows downhill.", "Let's start over: a budget lists income and costs."],
    ),
    (
        "The Roman roads. Actually, I made a mistake. Compound interest is P(1+r)^n.",
        ["The Roman roads.", "Actually, I made a mistake. Compound interest is P(1+r)^n."],
    ),
    (
        "Bees dance. I'd like to revise my answer: iron the collar first.",
        ["Bees dance.", "I'd like to revise my answer: iron the collar first."],
    ),
    (
        "Jazz is great. I apologize for the confusion. Whisk the eggs.",
        ["Jazz is great.", "I apologize for the confusion. Whisk the eggs."],
    ),
    (
        "Whales breathe air - scratch that, rinse the filter first.",
        ["Whales breathe air -", "scratch that, rinse the filter first."],
    ),
    ("A. Wait, that's wrong. B. Let me try again. C.", ["A.", "Wait, that's wrong. B.", "Let me try again. C."]),
    ("Ash clouds rise. I'll try again: whisk the eggs.", ["Ash clouds rise.", "I'll try again: whisk the eggs."]),
    ("I'll try again. Whisk the eggs.", ["I'll try again. Whisk the eggs."]),
    ("Lava. Trying again: fold the sheet.", ["Lava.", "Trying again: fold the sheet."]),
    # Elaboration, restatement and ordinary uses of "wait" are not restarts.
    (
        "Wait for the water to boil, then pour slowly. Wait a minute between pours.",
        ["Wait for the water to boil, then pour slowly. Wait a minute between pours."],
    ),
    (
        "First, whisk the eggs. In other words, beat them well. To repeat: beat the eggs.",
        ["First, whisk the eggs. In other words, beat them well. To repeat: beat the eggs."],
    ),
    ("You can try again later if the dough does not rise.", ["You can try again later if the dough does not rise."]),
    ("Let me explain how to fold a sheet.", ["Let me explain how to fold a sheet."]),
    # Restart language before any attempt opens no empty attempt; trailing restart with nothing after adds none.
    ("Let me try again: whisk the eggs.", ["Let me try again: whisk the eggs."]),
    ("Whisk the eggs. Let me try again.", ["Whisk the eggs."]),
    # Nonsense is still an attempt; an empty reply has none.
    ("asdf qwer zxcv", ["asdf qwer zxcv"]),
    ("", []),
    ("   \n", []),
]


@pytest.mark.parametrize("response,expected", TABLE)
def test_split_attempts(response, expected):
    assert split_attempts(response) == expected


def test_strip_restart_leaves_the_content():
    assert strip_restart("No, wait! Orange") == "Orange"
    assert strip_restart("Let me try again: whisk.") == "whisk."
    assert strip_restart("Plain text.") == "Plain text."


FRAGMENTS = [
    ("Apple! No, wait! Orange", ["Apple!", "No, wait!", "Orange"]),
    ("Boil it. Then drain.\n\nServe: hot.", ["Boil it.", "Then drain.", "Serve:", "hot."]),
    ("Lava flows - scratch that - fold it", ["Lava flows", "scratch that", "fold it"]),
    # Degenerate text has no punctuation; a capitalised word after it still opens a fragment.
    (
        "blue blue blue Sorry, I lost the thread. Whisk it.",
        ["blue blue blue", "Sorry, I lost the thread.", "Whisk it."],
    ),
    ("zor blen I got lost", ["zor blen", "I got lost"]),
    ("Pi is 3.14 exactly.", ["Pi is 3.14 exactly."]),
    ("", []),
]


@pytest.mark.parametrize("text,expected", FRAGMENTS)
def test_fragments(text, expected):
    from steerlab.judges.restarts import fragments

    assert [text[a:b] for a, b in fragments(text)] == expected


def test_cut_attempts_merges_phrase_and_probe_cuts():
    from steerlab.judges.heuristic import cut_attempts

    text = "Lava is hot. Whoops, wrong topic. Whisk the eggs."
    probe = [(13, 33)]  # "Whoops, wrong topic."
    assert cut_attempts(text, [], probe) == [
        ("Lava is hot.", "Lava is hot."),
        ("Whoops, wrong topic. Whisk the eggs.", "Whisk the eggs."),
    ]
    text = "Lava. No, wait! Sorry, I drifted. Whisk."
    phrase = [6]  # "No, wait!"
    probe = [(16, 33)]  # the probe also fires on the next sentence: one restart, not two
    got = cut_attempts(text, phrase, probe)
    assert [a for a, _ in got] == ["Lava.", "No, wait! Sorry, I drifted. Whisk."] and got[1][1] == "Whisk."
    # A restart with nothing after it opens no attempt; one before any attempt is ignored.
    assert cut_attempts("Whisk. Sorry, I drifted.", [], [(7, 24)]) == [("Whisk.", "Whisk.")]
    assert [a for a, _ in cut_attempts("Let me try again: whisk.", [0], [])] == ["Let me try again: whisk."]
