"""The one grading loop: grade a stored run with a judge, only responses without a successful grade, chunk by chunk.

Every command that grades a run (`steerlab judge run | compare`, `steerlab esr run | regrade`) goes
through `grade_run`, and the question the judge sees is read from the run's config, so no two
commands can store different grades under one (trial, judge, rubric) key. Failed grades are recorded
as errors and picked up again on the next call, so a judge server that dies mid-run loses nothing.
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


JUDGE_PROMPTS = ("task", "full")


def judge_prompt_mode(config: dict) -> str:
    """Which question the judge sees, from a run config: its `judge_prompt` at the top or in an experiment's section.

    "task": the task without any suffix the experiment added (a trial's `extra["task"]`); "full": the
    prompt exactly as the model saw it. A run that names neither is graded on the full prompt.
    """
    sections = [config] + [v for v in config.values() if isinstance(v, dict)]
    mode = next((sec["judge_prompt"] for sec in sections if isinstance(sec.get("judge_prompt"), str)), "full")
    return mode if mode in JUDGE_PROMPTS else "full"


def question(trial, mode: str) -> str:
    """The question the judge sees for a trial under a judge-prompt mode."""
    return trial.extra.get("task", trial.prompt) if mode == "task" else trial.prompt


def grade_run(
    store: RunStore, judge: Judge, chunk: int = 16, progress: bool = False, check: bool = True
) -> GradingSummary:
    """Grade every generation in the store that this judge has not graded successfully yet."""
    if check:
        judge.check()
    mode = judge_prompt_mode(store.config)
    store.set_meta(f"judge:{judge.judge_id}", {**judge.config(), "judge_prompt": mode})
    todo = store.ungraded(judge.judge_id, judge.rubric_version)
    graded = errors = 0
    with progress_bar(progress) as bar:
        task = bar.add_task(f"grading ({judge.judge_id})", total=len(todo), info="")
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            grades = judge.grade_many([GradeRequest(question(t, mode), response, t.label) for t, response in part])
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
