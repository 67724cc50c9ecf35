"""LLM judges: the ESR attempt rubric over any chat back end, with bounded concurrency."""

from __future__ import annotations

from typing import Any

from steerlab.judges.backends import ChatBackend
from steerlab.judges.base import BaseJudge
from steerlab.judges.http import HttpError
from steerlab.judges.parse import parse_attempts
from steerlab.judges.rubrics import EsrRubric, esr_rubric
from steerlab.judges.types import Grade


class LLMJudge(BaseJudge):
    """Grades with the ESR rubric through a chat back end; transport and parse failures become grade errors."""

    def __init__(self, backend: ChatBackend, concurrency: int = 4, rubric: EsrRubric | None = None):
        self.backend = backend
        self.concurrency = max(1, int(concurrency))
        self.judge_id = backend.identity
        self.rubric = rubric or esr_rubric()
        self.rubric_version = self.rubric.version

    def _grade(self, prompt: str, response: str, steering_label: str) -> Grade:
        try:
            reply = self.backend.complete(self.rubric.system, self.rubric.user(prompt, response, steering_label))
        except HttpError as exc:
            return Grade.failed(f"judge call failed: {exc}")
        parsed = parse_attempts(reply)
        return Grade(parsed.attempts, parsed.error, reply)

    def check(self) -> None:
        self.backend.check()

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            **self.backend.config(),
            "concurrency": self.concurrency,
            "rubric": self.rubric.name,
            "anchors": self.rubric.anchors,
        }
