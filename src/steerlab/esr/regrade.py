"""Cross-judge re-grading (experiment 7): grade a run's stored responses with a second judge and compare."""

from __future__ import annotations

from steerlab.judges.agreement import agreement
from steerlab.store import RunStore


def regrade(store: RunStore, judge_a: tuple[str, str], judge, *, progress: bool = False) -> dict:
    """Grade every response with `judge` (missing grades only), then the agreement with judge_a's grades."""
    from steerlab.esr.runner import grade_pending

    grade_pending(store, judge, progress=progress)
    a = store.grades(*judge_a)
    b = store.grades(judge.judge_id, judge.rubric_version)
    keys = [k for k in a if k in b]
    return {"judge_a": judge_a[0], "judge_b": judge.judge_id, **agreement([a[k] for k in keys], [b[k] for k in keys])}
