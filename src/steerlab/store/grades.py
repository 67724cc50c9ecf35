"""Grade rows as the store keeps them: a judge's attempts with 0-100 scores, or a recorded error.

Plain data below the judges: the judges produce these rows, the run store writes and reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attempt:
    """One attempt at answering the prompt inside a response, with its 0-100 score."""

    text: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "score": self.score}


@dataclass(frozen=True)
class Grade:
    """A judge's verdict on one response: its attempts, or an error that says why there are none.

    `attempts == ()` with `error is None` means the response held no attempt at all (a valid verdict).
    """

    attempts: tuple[Attempt, ...] = ()
    error: str | None = None
    raw: str | None = None  # the judge's raw reply, kept for audits (never holds a key)
    judge_id: str = ""
    rubric_version: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempts", tuple(self.attempts))

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def n_attempts(self) -> int:
        return len(self.attempts)

    @property
    def first_score(self) -> float | None:
        return self.attempts[0].score if self.attempts else None

    @property
    def last_score(self) -> float | None:
        return self.attempts[-1].score if self.attempts else None

    @property
    def improved(self) -> bool:
        """An ESR episode: more than one attempt and the last strictly beats the first."""
        return self.n_attempts > 1 and self.attempts[-1].score > self.attempts[0].score

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": [a.to_dict() for a in self.attempts],
            "error": self.error,
            "raw": self.raw,
            "judge_id": self.judge_id,
            "rubric_version": self.rubric_version,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Grade":
        return cls(
            attempts=tuple(Attempt(str(a["text"]), float(a["score"])) for a in data.get("attempts") or []),
            error=data.get("error"),
            raw=data.get("raw"),
            judge_id=data.get("judge_id", ""),
            rubric_version=data.get("rubric_version", ""),
        )

    @classmethod
    def failed(cls, error: str, raw: str | None = None, judge_id: str = "", rubric_version: str = "") -> "Grade":
        return cls((), error, raw, judge_id, rubric_version)
