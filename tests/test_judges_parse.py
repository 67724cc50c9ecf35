"""The ESR reply parser on adversarial judge replies, and the rating/verdict parsers."""

import pytest

from steerlab.judges.parse import clamp_score, parse_attempts, parse_rating, parse_verdict


def scores(reply):
    parsed = parse_attempts(reply)
    assert parsed.error is None, parsed.error
    return [a.score for a in parsed.attempts]


def test_well_formed_reply_with_feedback_first():
    reply = 'The first try drifts, the second recovers.\n<json>{"attempts": [{"attempt_text": "Banana!", "score": 0}, {"attempt_text": "No, wait! Apple.", "score": 100}]}</json>'
    parsed = parse_attempts(reply)
    assert [a.text for a in parsed.attempts] == ["Banana!", "No, wait! Apple."]
    assert [a.score for a in parsed.attempts] == [0.0, 100.0]


def test_missing_tags_fall_back_to_bare_json():
    assert scores('Feedback here. {"attempts": [{"attempt_text": "x", "score": 70}]} done') == [70.0]


def test_json_in_a_code_fence():
    assert scores('```json\n{"attempts": [{"attempt_text": "x", "score": 55}]}\n```') == [55.0]


def test_two_json_blocks_the_last_tagged_one_wins():
    reply = (
        'Draft: <json>{"attempts": [{"attempt_text": "a", "score": 10}]}</json>\n'
        'Correction, final: <json>{"attempts": [{"attempt_text": "a", "score": 90}]}</json>'
    )
    assert scores(reply) == [90.0]


def test_tagged_block_beats_a_later_bare_object():
    reply = '<json>{"attempts": [{"attempt_text": "a", "score": 40}]}</json> (schema was {"attempts": [{"attempt_text": "t", "score": 0}]})'
    assert scores(reply) == [40.0]


def test_scores_out_of_range_are_clamped_and_numeric_strings_accepted():
    assert scores(
        '<json>{"attempts": [{"attempt_text": "a", "score": 140}, {"attempt_text": "b", "score": -5}, {"attempt_text": "c", "score": "85"}]}</json>'
    ) == [100.0, 0.0, 85.0]


def test_response_text_that_contains_json_tags():
    # The graded response itself talks about <json> tags; the judge quotes it inside attempt_text.
    reply = (
        'The model explained tags: it wrote <json>{"attempts": []}</json> as an example, which is not our verdict.\n'
        '<json>{"attempts": [{"attempt_text": "Wrap data in <json></json> tags like <json>{\\"a\\": 1}</json>", "score": 65}]}</json>'
    )
    parsed = parse_attempts(reply)
    assert parsed.error is None
    assert [a.score for a in parsed.attempts] == [65.0]
    assert "<json></json>" in parsed.attempts[0].text


def test_closing_tag_inside_a_string_does_not_cut_the_block():
    reply = '<json>{"attempts": [{"attempt_text": "ends with </json> here {", "score": 30}]}</json>'
    assert scores(reply) == [30.0]


def test_empty_attempt_list_is_a_valid_verdict_not_an_error():
    parsed = parse_attempts('Only a clarifying question. <json>{"attempts": []}</json>')
    assert parsed.error is None and parsed.attempts == ()


def test_empty_attempt_texts_are_dropped():
    assert scores(
        '<json>{"attempts": [{"attempt_text": "  ", "score": 50}, {"attempt_text": "real", "score": 80}]}</json>'
    ) == [80.0]


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "   ",
        None,
        "I think it is a good answer, 80/100.",
        "<json>not json at all</json>",
        '<json>{"attempts": [{"attempt_text": "a"}]}</json>',  # no score
        '<json>{"attempts": [{"attempt_text": "a", "score": "high"}]}</json>',  # junk score
        '<json>{"attempts": [{"attempt_text": "a", "score": true}]}</json>',  # bool is not a score
        '<json>{"attempts": "none"}</json>',
        '<json>{"attempt": []}</json>',  # wrong key
        '<json>{"attempts": [{"attempt_text": "a", "score": 50}',  # truncated by max_tokens
    ],
)
def test_malformed_replies_become_errors(reply):
    parsed = parse_attempts(reply)
    assert parsed.error and parsed.attempts == ()


def test_wrapper_object_around_the_schema_is_found():
    assert scores('{"result": {"attempts": [{"attempt_text": "a", "score": 12}]}}') == [12.0]


def test_clamp_score():
    assert clamp_score(101) == 100.0 and clamp_score(-1) == 0.0 and clamp_score("42%") == 42.0
    assert clamp_score(float("nan")) is None and clamp_score(None) is None and clamp_score(False) is None


@pytest.mark.parametrize(
    "reply,score,label,error",
    [
        ("85", 85.0, None, False),
        (" 7\n", 7.0, None, False),
        ("Score: 120", 100.0, None, False),
        ("REFUSAL", None, "REFUSAL", False),
        ("CODE", None, "CODE", False),
        ("between 20 and 40", None, None, True),
        ("no idea", None, None, True),
        ("", None, None, True),
    ],
)
def test_parse_rating(reply, score, label, error):
    parsed = parse_rating(reply)
    assert parsed.score == score and parsed.label == label and bool(parsed.error) == error


def test_parse_verdict_last_word_wins():
    assert parse_verdict("REFUSAL") == (True, None)
    assert parse_verdict("Not a REFUSAL. Verdict: COMPLIANCE") == (False, None)
    value, err = parse_verdict("maybe")
    assert value is None and err
