"""One unit of ESR generation work, shared by the in-process loop and every distributed worker.

Pending trials are cut into the same fixed batches everywhere, and each batch runs through one
function, so a batch gives the same tokens in-process, on any Ray worker, and after a re-queue.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from steerlab.esr.config import EsrConfig
from steerlab.models.loading import Model
from steerlab.sae import Sae
from steerlab.store import Trial

# What the run store takes for one trial: (trial key, text, token ids, finish reason, meta).
GenerationRow = tuple[str, str, list[int], str, dict[str, Any]]
# Builds (model, sae) inside a worker; must be picklable (a worker loads the model once, itself).
Loader = Callable[[], tuple[Model, Sae]]


def plan_batches(pending: Sequence[Trial], batch_size: int, max_batches: int | None = None) -> list[list[Trial]]:
    """Pending trials in insertion order, cut into batches of batch_size (the last may be shorter)."""
    batches = [list(pending[i : i + batch_size]) for i in range(0, len(pending), batch_size)]
    return batches if max_batches is None else batches[:max_batches]


def generate_trials(model: Model, sae: Sae, cfg: EsrConfig, trials: Sequence[Trial]) -> list[GenerationRow]:
    """Generate one batch of trials (each row its own latent, strength, ablation and seed) as store rows."""
    import steerlab
    from steerlab.esr.trials import batch_interventions, sae_at_layer

    layer = cfg.steer_layer if cfg.steer_layer is not None else sae.layer
    ablation_sae = sae_at_layer(sae, layer if cfg.ablation_layer == "steering" else None)
    ivs = batch_interventions(trials, sae, cfg.steer_layer, ablation_sae)
    gens = steerlab.generate(
        model,
        [t.prompt for t in trials],
        ivs,
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        repetition_penalty=cfg.repetition_penalty,
        seed=[t.seed for t in trials],
        batch_size=cfg.batch_size,
    )
    return [
        (t.key, g.text, list(g.token_ids), g.finish_reason, {"finish": g.finish_reason}) for t, g in zip(trials, gens)
    ]


class ConfigLoader:
    """Load the run's model and SAE from its config (what a worker on another machine does)."""

    def __init__(self, cfg: EsrConfig):
        self.cfg = cfg

    def __call__(self) -> tuple[Model, Sae]:
        import steerlab
        from steerlab.esr.setup import load_sae_for

        model = steerlab.load(self.cfg.model)
        sae, _, _ = load_sae_for(self.cfg, model, progress=False)
        return model, sae


class ObjectLoader:
    """Ship already-loaded objects to the workers (small models and tests; a big model should use ConfigLoader)."""

    def __init__(self, model: Model, sae: Sae):
        self.model, self.sae = model, sae

    def __call__(self) -> tuple[Model, Sae]:
        return self.model, self.sae
