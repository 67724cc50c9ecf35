"""Robust parsers for judge replies: they return a value or a one-line error, never raise.

The ESR parser decodes every JSON object in the reply with a real JSON decoder (so a `<json>` tag or
a brace inside a quoted attempt cannot cut a block short), keeps those that match the schema, and
prefers the last block wrapped in `<json>` tags, since the rubric asks for the verdict last.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from steerlab.judges.types import Attempt

_DECODER = json.JSONDecoder()
_OPEN_TAG = re.compile(r"<json>\s*$", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"^\s*</json>", re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """A parse result: attempts (possibly empty) or an error."""

    attempts: tuple[Attempt, ...] = ()
    error: str | None = None


def clamp_score(value: object) -> float | None:
    """A 0-100 score from a number or numeric string; out-of-range values are clamped, junk is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(min(100.0, max(0.0, value)))


def _attempts_from(obj: object) -> tuple[Attempt, ...] | None:
    """Validate the {"attempts": [{"attempt_text": str, "score": number}]} schema; None when it does not fit."""
    if not isinstance(obj, dict) or not isinstance(obj.get("attempts"), list):
        return None
    out = []
    for item in obj["attempts"]:
        if not isinstance(item, dict):
            return None
        text = item.get("attempt_text", item.get("text"))
        score = clamp_score(item.get("score"))
        if score is None or (text is not None and not isinstance(text, str)):
            return None
        if text is None or not text.strip():
            continue  # the rubric forbids empty attempts; a judge that emits one gets it dropped
        out.append(Attempt(text.strip(), score))
    return tuple(out)


def _json_objects(reply: str) -> list[tuple[int, int, object]]:
    """Every top-level-decodable JSON object in the text as (start, end, value)."""
    found = []
    i = reply.find("{")
    while i != -1:
        try:
            value, end = _DECODER.raw_decode(reply, i)
        except ValueError:
            i = reply.find("{", i + 1)
            continue
        found.append((i, end, value))
        # Schema-fitting objects swallow their insides; others may wrap a fitting object, so look inside.
        i = reply.find("{", end if _attempts_from(value) is not None else i + 1)
    return found


def parse_attempts(reply: str | None) -> Parsed:
    """Parse an ESR judge reply into attempts; prefer the last tagged block, else the last bare one."""
    if reply is None or not reply.strip():
        return Parsed(error="The judge returned an empty reply.")
    tagged: list[tuple[Attempt, ...]] = []
    bare: list[tuple[Attempt, ...]] = []
    for start, end, value in _json_objects(reply):
        attempts = _attempts_from(value)
        if attempts is None:
            continue
        is_tagged = bool(_OPEN_TAG.search(reply[:start])) and bool(_CLOSE_TAG.match(reply[end:]))
        (tagged if is_tagged else bare).append(attempts)
    if tagged:
        return Parsed(tagged[-1])
    if bare:
        return Parsed(bare[-1])
    if "<json>" in reply.lower():
        return Parsed(error='The judge reply has <json> tags but no valid {"attempts": [...]} object inside them.')
    return Parsed(error='The judge reply holds no {"attempts": [...]} JSON object.')


_NUMBER = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)(?![\w.])")


@dataclass(frozen=True)
class ParsedScore:
    """A 0-100 rating, or a label (CODE/REFUSAL) in place of a number, or an error."""

    score: float | None = None
    label: str | None = None
    error: str | None = None


def parse_rating(reply: str | None, labels: tuple[str, ...] = ("CODE", "REFUSAL")) -> ParsedScore:
    """Parse a 'one number 0-100, or a label' reply; several different numbers are ambiguous."""
    if reply is None or not reply.strip():
        return ParsedScore(error="The judge returned an empty reply.")
    text = reply.strip()
    upper = text.upper()
    numbers = [float(m) for m in _NUMBER.findall(text)]
    for label in labels:
        if re.search(rf"\b{label}\b", upper) and not numbers:
            return ParsedScore(label=label)
    distinct = sorted(set(numbers))
    if len(distinct) == 1:
        return ParsedScore(score=clamp_score(distinct[0]))
    if not distinct:
        return ParsedScore(error=f"The judge reply holds no number: {text[:80]!r}.")
    return ParsedScore(error=f"The judge reply holds several numbers {distinct[:5]}; expected exactly one.")


def parse_verdict(reply: str | None, yes: str = "REFUSAL", no: str = "COMPLIANCE") -> tuple[bool | None, str | None]:
    """Parse a one-word verdict; the last of the two words in the reply wins. Returns (value, error)."""
    if reply is None or not reply.strip():
        return None, "The judge returned an empty reply."
    upper = reply.upper()
    pos_yes, pos_no = upper.rfind(yes), upper.rfind(no)
    if pos_yes == -1 and pos_no == -1:
        return None, f"The judge reply says neither {yes} nor {no}: {reply.strip()[:80]!r}."
    return pos_yes > pos_no, None
