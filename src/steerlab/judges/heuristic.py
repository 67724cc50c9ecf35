"""The offline default judge: restart-phrase attempt splitting plus embedding relevance to the prompt.

An approximation of an LLM judge, not a replacement: it cannot tell a correct answer from a fluent
wrong one on the same topic. Each attempt's score maps the cosine similarity between prompt and
attempt (packaged all-MiniLM-L6-v2, mean pooling) linearly from [LOW, HIGH] onto [0, 100], clipped.
LOW/HIGH were set on `judges.calibration` (on-topic cosines 0.48-0.76, wrong-task 0.00-0.45,
unrelated-topic -0.09-0.17); `steerlab judge calibrate` re-measures the separation.
"""

from __future__ import annotations

from typing import Any, Sequence

from steerlab.judges.base import BaseJudge
from steerlab.judges.embedder import Embedder, packaged_embedder
from steerlab.judges.restarts import split_attempts, strip_restart
from steerlab.judges.types import Attempt, Grade, GradeRequest

LOW = 0.20  # cosine at or below which an attempt scores 0
HIGH = 0.60  # cosine at or above which an attempt scores 100
HEURISTIC_VERSION = "heuristic-minilm-v1"


def cosine_to_score(cos: float, low: float = LOW, high: float = HIGH) -> float:
    """Linear map of a cosine similarity onto 0-100, clipped at both ends."""
    return float(round(100.0 * min(1.0, max(0.0, (cos - low) / (high - low))), 1))


class HeuristicJudge(BaseJudge):
    """Splits attempts at explicit restart phrases and scores each by relevance to the prompt."""

    rubric_version = HEURISTIC_VERSION

    def __init__(self, embedder: Embedder | None = None, low: float = LOW, high: float = HIGH):
        self._embedder = embedder
        self.low, self.high = low, high
        self.judge_id = f"heuristic:all-MiniLM-L6-v2:{low:g}-{high:g}"

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = packaged_embedder()
        return self._embedder

    def check(self) -> None:
        self.embedder  # loads the packaged model now, so a missing package fails before any generation

    def _grade(self, prompt: str, response: str, steering_label: str) -> Grade:
        return self._grade_batch([GradeRequest(prompt, response, steering_label)])[0]

    def _grade_batch(self, items: Sequence[GradeRequest]) -> list[Grade]:
        split = [split_attempts(it.response) for it in items]
        texts = [it.prompt for it in items] + [strip_restart(a) or a for atts in split for a in atts]
        vectors = self.embedder.embed(texts)
        prompts, bodies = vectors[: len(items)], vectors[len(items) :]
        out, k = [], 0
        for i, atts in enumerate(split):
            scored = []
            for text in atts:
                cos = float(prompts[i] @ bodies[k])
                scored.append(Attempt(text, cosine_to_score(cos, self.low, self.high)))
                k += 1
            out.append(Grade(tuple(scored)))
        return out

    def grade_many(self, items: Sequence[GradeRequest], progress: bool = False) -> list[Grade]:
        """Batched embedding of all items at once; a failure is recorded on every item of the batch."""
        items = list(items)
        out: list[Grade] = []
        for start in range(0, len(items), 64):
            chunk = items[start : start + 64]
            try:
                grades = self._grade_batch(chunk)
            except Exception as exc:  # noqa: BLE001 - recorded, never raised
                grades = [Grade.failed(f"{type(exc).__name__}: {exc}") for _ in chunk]
            out += [Grade(g.attempts, g.error, g.raw, self.judge_id, self.rubric_version) for g in grades]
        return out

    def config(self) -> dict[str, Any]:
        return {**super().config(), "kind": "heuristic", "embedder": "all-MiniLM-L6-v2 (packaged)", "low": self.low, "high": self.high}


def calibration_report(judge: HeuristicJudge | None = None) -> dict[str, float]:
    """Mean scores on the hand-written on-topic vs off-topic sets, their gap, and the ROC AUC."""
    from steerlab.judges.calibration import calibration_set

    judge = judge or HeuristicJudge()
    pairs = calibration_set().pairs
    grades = judge.grade_many([GradeRequest(p, a) for p, a, _ in pairs])
    on = [g.first_score for g, (_, _, t) in zip(grades, pairs) if t]
    off = [g.first_score for g, (_, _, t) in zip(grades, pairs) if not t]
    wins = sum((a > b) + 0.5 * (a == b) for a in on for b in off)
    return {
        "n_on": len(on), "n_off": len(off),
        "mean_on": sum(on) / len(on), "mean_off": sum(off) / len(off),
        "min_on": min(on), "max_off": max(off),
        "gap": sum(on) / len(on) - sum(off) / len(off),
        "auc": wins / (len(on) * len(off)),
    }
