"""The Judge protocol and a base class whose `grade` never raises during a run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, Sequence, runtime_checkable

from steerlab.judges.types import Grade, GradeRequest


@runtime_checkable
class Judge(Protocol):
    """Anything that grades (prompt, response, steering label) into attempts with 0-100 scores."""

    judge_id: str  # pinned identity: kind + full model id (+ endpoint); part of every cache key
    rubric_version: str

    def grade(self, prompt: str, response: str, steering_label: str = "") -> Grade: ...

    def grade_many(self, items: Sequence[GradeRequest], progress: bool = False) -> list[Grade]: ...

    def check(self) -> None: ...

    def config(self) -> dict[str, Any]: ...


class BaseJudge:
    """Shared plumbing: error capture, stamping the judge id, and a thread pool for grade_many."""

    judge_id: str = "base"
    rubric_version: str = ""
    concurrency: int = 1

    def _grade(self, prompt: str, response: str, steering_label: str) -> Grade:
        raise NotImplementedError

    def grade(self, prompt: str, response: str, steering_label: str = "") -> Grade:
        """Grade one response; any failure becomes a recorded error, so one bad reply never stops a run."""
        try:
            grade = self._grade(prompt, response, steering_label)
        except Exception as exc:  # noqa: BLE001 - the contract is: record, never raise
            grade = Grade.failed(f"{type(exc).__name__}: {exc}")
        return Grade(grade.attempts, grade.error, grade.raw, self.judge_id, self.rubric_version)

    def grade_many(self, items: Sequence[GradeRequest], progress: bool = False) -> list[Grade]:
        """Grade many items, `concurrency` at a time, in input order."""
        from steerlab.progress import progress_bar

        items = list(items)
        out: list[Grade | None] = [None] * len(items)
        with progress_bar(progress) as bar, ThreadPoolExecutor(max(1, self.concurrency)) as pool:
            task = bar.add_task(f"grading ({self.judge_id})", total=len(items), info="")
            futures = {
                pool.submit(self.grade, it.prompt, it.response, it.steering_label): i for i, it in enumerate(items)
            }
            for future in futures:
                out[futures[future]] = future.result()
                bar.advance(task)
        return out  # type: ignore[return-value]

    def check(self) -> None:
        """Fail fast, with one sentence, when the judge cannot work (unreachable server, bad key)."""

    def config(self) -> dict[str, Any]:
        """The judge's settings for the run config (JSON-able, never a secret)."""
        return {"judge_id": self.judge_id, "rubric_version": self.rubric_version}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.judge_id!r})"
