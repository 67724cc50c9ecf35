"""What a judge returns: attempts with 0-100 scores, or a recorded error (never an exception).

The rows themselves (`Attempt`, `Grade`) live in the store (`steerlab.store.grades`), which keeps them;
they are re-exported here, where the judges' interface has always named them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from steerlab.store.grades import Attempt, Grade

__all__ = ["Attempt", "Grade", "GradeRequest"]


@dataclass(frozen=True)
class GradeRequest:
    """One item to grade: the prompt, the model's response and the steering label (may be empty)."""

    prompt: str
    response: str
    steering_label: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
