"""Generate the missing trials of a run: pending trials in batches, written as each batch finishes.

Rows are independent of their batch (per-row interventions and seeds), so a run killed and resumed
gives the same generations as one uninterrupted run.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from steerlab.engine.generate import generate
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model
from steerlab.progress import progress_bar
from steerlab.store.runstore import RunStore
from steerlab.store.trial import Trial


def generate_missing(
    store: RunStore,
    model: Model,
    interventions_for: Callable[[Trial], Sequence[Intervention]],
    *,
    batch_size: int = 16,
    max_batches: int | None = None,
    progress: bool = False,
    **generate_kwargs: Any,
) -> int:
    """Generate every trial without a generation; returns how many were written now.

    interventions_for(trial) gives that trial's interventions (e.g. SteerLatent(sae, trial.latent,
    trial.strength)); the trial's own seed is used. max_batches stops early (for tests and time limits).
    """
    pending = store.pending()
    written = 0
    with progress_bar(progress) as bar:
        task = bar.add_task("generating", total=len(pending), info="")
        for n, start in enumerate(range(0, len(pending), batch_size)):
            if max_batches is not None and n >= max_batches:
                break
            batch = pending[start : start + batch_size]
            per_row = [list(interventions_for(t)) for t in batch]
            gens = generate(
                model,
                [t.prompt for t in batch],
                per_row,
                seed=[t.seed for t in batch],
                batch_size=batch_size,
                **generate_kwargs,
            )
            written += store.put_generations(
                (t.key, g.text, g.token_ids, g.finish_reason, {"interventions": [iv.fingerprint() for iv in ivs]})
                for t, g, ivs in zip(batch, gens, per_row)
            )
            bar.advance(task, len(batch))
    return written
