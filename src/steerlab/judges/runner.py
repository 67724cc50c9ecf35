"""Grade a stored run with a judge: only responses without a successful grade, saved chunk by chunk.

Failed grades are recorded as errors and picked up again on the next call, so a judge server that
dies mid-run loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from steerlab.judges.base import Judge
from steerlab.judges.types import GradeRequest
from steerlab.progress import progress_bar
from steerlab.store.runstore import RunStore


@dataclass(frozen=True)
class GradingSummary:
    judge_id: str
    attempted: int
    graded: int
    errors: int

    @property
    def complete(self) -> bool:
        return self.errors == 0


def grade_run(store: RunStore, judge: Judge, chunk: int = 16, progress: bool = False, check: bool = True) -> GradingSummary:
    """Grade every generation in the store that this judge has not graded successfully yet."""
    if check:
        judge.check()
    store.set_meta(f"judge:{judge.judge_id}", judge.config())
    todo = store.ungraded(judge.judge_id, judge.rubric_version)
    graded = errors = 0
    with progress_bar(progress) as bar:
        task = bar.add_task(f"grading ({judge.judge_id})", total=len(todo), info="")
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            grades = judge.grade_many([GradeRequest(t.prompt, response, t.label) for t, response in part])
            store.put_grades([(t.key, g) for (t, _), g in zip(part, grades)])
            ok = sum(g.ok for g in grades)
            graded, errors = graded + ok, errors + len(grades) - ok
            bar.update(task, advance=len(part), info=f"{errors} errors")
    return GradingSummary(judge.judge_id, len(todo), graded, errors)


def compare_judges(store: RunStore, judge_a: tuple[str, str], judge_b: tuple[str, str]) -> dict:
    """Agreement between two judges' stored grades over the trials both graded."""
    from steerlab.judges.agreement import agreement

    a, b = store.grades(*judge_a), store.grades(*judge_b)
    keys = [k for k in a if k in b]
    return {"judge_a": judge_a[0], "judge_b": judge_b[0], **agreement([a[k] for k in keys], [b[k] for k in keys])}
