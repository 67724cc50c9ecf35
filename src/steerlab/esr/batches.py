"""One batch of ESR trials -> store rows, shared by the in-process loop, every Ray worker and the vLLM path.

Pending trials are cut into the same fixed batches everywhere (`distributed.plan_batches`), and each
batch runs through `generate_trials`, so a batch gives the same tokens in-process, on any Ray worker,
and after a re-queue. Its interventions come from `esr.trials.trial_interventions`, on every backend.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from steerlab.distributed.work import plan_batches
from steerlab.engine.generate import Generation, generate
from steerlab.esr.config import EsrConfig
from steerlab.esr.trials import trial_interventions
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model
from steerlab.progress import progress_bar
from steerlab.sae import Sae
from steerlab.store import RunStore, Trial

# What the run store takes for one trial: (trial key, text, token ids, finish reason, meta).
GenerationRow = tuple[str, str, list[int], str, dict[str, Any]]


def generate_batch(
    model: Model,
    sae: Sae,
    cfg: EsrConfig,
    trials: Sequence[Trial],
    *,
    ablation: Sae | None = None,
    max_new_tokens: int | None = None,
) -> list[Generation]:
    """Generate one batch of trials on the hf engine (each row its own latent, strength, ablation and seed).

    ablation: the SAE that zero-clamps `ablate` latents (default: the run's); max_new_tokens: default cfg's.
    """
    return generate(
        model,
        [t.prompt for t in trials],
        trial_interventions(cfg, sae, trials, ablation),
        max_new_tokens=max_new_tokens or cfg.max_new_tokens,
        temperature=cfg.temperature,
        repetition_penalty=cfg.repetition_penalty,
        seed=[t.seed for t in trials],
        batch_size=cfg.batch_size,
    )


def generate_trials(model: Model, sae: Sae, cfg: EsrConfig, trials: Sequence[Trial]) -> list[GenerationRow]:
    """Generate one batch of trials as store rows."""
    gens = generate_batch(model, sae, cfg, trials)
    return [
        (t.key, g.text, list(g.token_ids), g.finish_reason, {"finish": g.finish_reason}) for t, g in zip(trials, gens)
    ]


class TrialBatchWork:
    """The distributed pool's work function for ESR: (model, sae) context, one batch of trials -> store rows."""

    def __init__(self, cfg: EsrConfig):
        self.cfg = cfg

    def __call__(self, context: tuple[Model, Sae], trials: list[Trial]) -> list[GenerationRow]:
        model, sae = context
        return generate_trials(model, sae, self.cfg, trials)


class ConfigLoader:
    """Load the run's model and SAE from its config (what a worker on another machine does)."""

    def __init__(self, cfg: EsrConfig):
        self.cfg = cfg

    def __call__(self) -> tuple[Model, Sae]:
        from steerlab.esr.setup import load_sae_for
        from steerlab.models.loading import load

        model = load(self.cfg.model)
        sae, _, _ = load_sae_for(self.cfg, model, progress=False)
        return model, sae


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
    """Generate every trial of a store without a generation, each with its own interventions; returns rows written.

    interventions_for(trial) gives that trial's interventions (e.g. SteerLatent(sae, trial.latent,
    trial.strength)); the trial's own seed is used. Rows are independent of their batch (per-row
    interventions and seeds), so a run killed and resumed gives the same generations as one uninterrupted
    run. max_batches stops early (for tests and time limits).
    """
    pending = store.pending()
    written = 0
    with progress_bar(progress) as bar:
        task = bar.add_task("generating", total=len(pending), info="")
        for batch in plan_batches(pending, batch_size, max_batches):
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
