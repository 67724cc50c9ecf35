"""LLM judges: the ESR attempt rubric over any chat back end, with bounded concurrency."""

from __future__ import annotations

from typing import Any

from steerlab.judges.backends import ChatBackend
from steerlab.judges.base import BaseJudge
from steerlab.judges.http import HttpError
from steerlab.judges.parse import parse_attempts
from steerlab.judges.rubrics import ESR_RUBRIC_VERSION, ESR_SYSTEM, esr_user_message
from steerlab.judges.types import Grade


class LLMJudge(BaseJudge):
    """Grades with the ESR rubric through a chat back end; transport and parse failures become grade errors."""

    rubric_version = ESR_RUBRIC_VERSION

    def __init__(self, backend: ChatBackend, concurrency: int = 4):
        self.backend = backend
        self.concurrency = max(1, int(concurrency))
        self.judge_id = backend.identity

    def _grade(self, prompt: str, response: str, steering_label: str) -> Grade:
        try:
            reply = self.backend.complete(ESR_SYSTEM, esr_user_message(prompt, response, steering_label))
        except HttpError as exc:
            return Grade.failed(f"judge call failed: {exc}")
        parsed = parse_attempts(reply)
        return Grade(parsed.attempts, parsed.error, reply)

    def check(self) -> None:
        self.backend.check()

    def config(self) -> dict[str, Any]:
        return {**super().config(), **self.backend.config(), "concurrency": self.concurrency}
