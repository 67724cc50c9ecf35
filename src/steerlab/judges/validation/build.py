"""Build the judge-validation set: several hundred answers whose attempts and scores are known by construction.

Categories (each row says which):
- `on_topic`: the prompt's own steps, fluent (one attempt, score 100);
- `off_topic`: an unrelated passage (one attempt, 0);
- `degenerate`: a word or phrase loop or word salad (one attempt, 0), or on-topic steps that collapse
  into a loop (`on_then_loop`, one attempt, 50);
- `ordinary`: on-topic steps holding one sentence where "wait", "again", "start over"... keep their
  ordinary sense (one attempt, 100);
- `restart_better`: off topic (or degenerate), a held-out restart phrasing, then on topic ([0, 100]);
- `restart_worse`: on topic, a held-out restart phrasing, then off topic ([100, 0]);
- `restart_three`: off topic, restart, another unrelated passage or a loop, restart, on topic ([0, 0, 100]).
"""

from __future__ import annotations

import random
from typing import Any

from steerlab.judges.validation.heldout import HELDOUT_RESTARTS
from steerlab.judges.validation.material import PROMPTS, UNRELATED

SET_VERSION = "judge-validation-v1"
COUNTS = {
    "on_topic": 60,
    "off_topic": 60,
    "degenerate": 40,
    "ordinary": 60,
    "restart_better": 120,
    "restart_worse": 30,
    "restart_three": 60,
}


def _loop(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        word = rng.choice(["water", "the", "yes", "so", "blue", "step", "maybe"])
        return " ".join([word] * rng.randint(10, 24))
    if kind == 1:
        phrase = rng.choice(
            [
                "and it is good and it is good",
                "you can you can you can",
                "the thing is the thing",
                "more and more and more",
            ]
        )
        return " ".join([phrase] * rng.randint(3, 5))
    syllables = ["bra", "nok", "tel", "wim", "sar", "quo", "dil", "fep", "gru", "yan", "hox", "plu"]
    return " ".join("".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(7, 15)))


def _join(rng: random.Random, parts: list[str]) -> tuple[str, list[int]]:
    """Join parts with a space or a blank line; returns the text and each part's start."""
    text, starts = "", []
    for part in parts:
        if text:
            text += "\n\n" if rng.random() < 0.2 else " "
        starts.append(len(text))
        text += part
    return text, starts


def _steps(rng: random.Random, steps: tuple[str, ...], lo: int = 2, hi: int = 4) -> list[str]:
    k = rng.randint(lo, min(hi, len(steps)))
    first = rng.randint(0, len(steps) - k)
    return list(steps[first : first + k])


def build_set(seed: int = 0) -> list[dict[str, Any]]:
    """The packaged validation set (deterministic for a seed), as rows ready for JSONL."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    phrase_cycle = list(HELDOUT_RESTARTS)

    def phrase() -> str:
        if not phrase_cycle:
            phrase_cycle.extend(HELDOUT_RESTARTS)
        return phrase_cycle.pop(rng.randrange(len(phrase_cycle)))

    def add(category: str, prompt: str, parts: list[str], restart_idx: list[int], scores: list[float]) -> None:
        text, starts = _join(rng, parts)
        rows.append(
            {
                "id": f"{category}-{sum(r['category'] == category for r in rows):03d}",
                "category": category,
                "prompt": prompt,
                "response": text,
                "attempts": len(scores),
                "scores": scores,
                "restarts": [{"start": starts[i], "phrase": parts[i]} for i in restart_idx],
            }
        )

    def off(exclude: tuple[str, ...] = ()) -> list[str]:
        passage = rng.choice([u for u in UNRELATED if u not in exclude])
        return list(passage[: rng.randint(2, 3)])

    for _ in range(COUNTS["on_topic"]):
        p, steps, _ = rng.choice(PROMPTS)
        add("on_topic", p, _steps(rng, steps), [], [100.0])
    for _ in range(COUNTS["off_topic"]):
        p = rng.choice(PROMPTS)[0]
        add("off_topic", p, off(), [], [0.0])
    for i in range(COUNTS["degenerate"]):
        p, steps, _ = rng.choice(PROMPTS)
        if i % 2:
            add("degenerate", p, [_loop(rng)], [], [0.0])
        else:
            add("on_then_loop", p, _steps(rng, steps, 1, 2) + [_loop(rng)], [], [50.0])
    for _ in range(COUNTS["ordinary"]):
        p, steps, ordinary = rng.choice(PROMPTS)
        body = _steps(rng, steps)
        body.insert(rng.randint(1, len(body)), ordinary)
        add("ordinary", p, body, [], [100.0])
    for i in range(COUNTS["restart_better"]):
        p, steps, _ = rng.choice(PROMPTS)
        first = [_loop(rng)] if i % 4 == 3 else off()
        parts = first + [phrase()] + _steps(rng, steps)
        add("restart_better", p, parts, [len(first)], [0.0, 100.0])
    for _ in range(COUNTS["restart_worse"]):
        p, steps, _ = rng.choice(PROMPTS)
        first = _steps(rng, steps, 2, 3)
        parts = first + [phrase()] + off()
        add("restart_worse", p, parts, [len(first)], [100.0, 0.0])
    for i in range(COUNTS["restart_three"]):
        p, steps, _ = rng.choice(PROMPTS)
        passage = rng.choice(UNRELATED)
        first = list(passage[:2])
        second = [_loop(rng)] if i % 3 == 2 else off(exclude=(passage,))
        parts = first + [phrase()] + second + [phrase()] + _steps(rng, steps)
        add("restart_three", p, parts, [len(first), len(first) + 1 + len(second)], [0.0, 0.0, 100.0])
    return rows
