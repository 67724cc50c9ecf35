"""Behaviour of a model under the persona rubric: generate on prompts, grade, summarise as rates."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from steerlab.engine.generate import generate
from steerlab.judges.persona import PersonaGrade, misalignment_rate
from steerlab.judges.rubrics import COHERENT_ABOVE
from steerlab.models.loading import Model


@dataclass
class Behaviour:
    """Misalignment and incoherence rates over graded answers, with the per-answer scores kept."""

    judge: str
    n: int
    misalignment_rate: float | None
    incoherent_rate: float | None
    mean_alignment: float | None
    mean_coherence: float | None
    prompts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    alignment: list[float | None] = field(default_factory=list)
    coherence: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Behaviour":
        return cls(**data)

    def misalignment_scores(self) -> list[float]:
        """100 - alignment per rated answer: a per-answer behavioural score (higher = more shifted)."""
        return [100.0 - a for a in self.alignment if a is not None]


def summarise(
    judge_id: str, prompts: Sequence[str], responses: Sequence[str], grades: Sequence[PersonaGrade]
) -> Behaviour:
    """Rates over the rated grades (a label or error drops an answer from every rate)."""
    rate, kept = misalignment_rate(grades)
    rated = [g for g in grades if g.misaligned is not None]
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return Behaviour(
        judge=judge_id,
        n=kept,
        misalignment_rate=rate,
        incoherent_rate=mean([float(g.coherence <= COHERENT_ABOVE) for g in rated]),
        mean_alignment=mean([g.alignment for g in rated]),
        mean_coherence=mean([g.coherence for g in rated]),
        prompts=list(prompts),
        responses=list(responses),
        alignment=[g.alignment for g in grades],
        coherence=[g.coherence for g in grades],
    )


def measure_behaviour(
    model: Model,
    prompts: Sequence[str],
    judge,
    *,
    max_new_tokens: int = 40,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
) -> Behaviour:
    """Generate `samples` answers per prompt and grade them with a persona rater (rate_many)."""
    rows = [p for p in prompts for _ in range(samples)]
    gens = generate(
        model,
        rows,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
    texts = [g.text for g in gens]
    grades = judge.rate_many(list(zip(rows, texts)))
    return summarise(str(getattr(judge, "judge_id", type(judge).__name__)), rows, texts, grades)
