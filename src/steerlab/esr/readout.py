"""Teacher-forced SAE readouts of exact token sequences (prompt ids + response ids), optionally steered.

Readouts use the same token ids the generation used, so the generation context and the analysis
context never differ (a weak point of the original code).
"""

from __future__ import annotations

from typing import Sequence

import torch

from steerlab.engine.generate import normalise_interventions
from steerlab.engine.scoring import ForcedBatch, forced_forward
from steerlab.interventions import Record
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model
from steerlab.sae import Sae


@torch.no_grad()
def readout(
    model: Model,
    sequences: Sequence[Sequence[int]],
    sae: Sae,
    *,
    latents: Sequence[int] | None = None,
    interventions: Sequence[Sequence[Intervention]] | None = None,
    batch_size: int = 8,
) -> list[torch.Tensor]:
    """SAE latent activations at every token of each sequence: one [n_tokens, n_latents] tensor per sequence."""
    record = Record(
        sae.layer,
        sae.site,
        sae=sae,
        latents=tuple(latents) if latents is not None else None,
        positions="all",
        name="esr",
    )
    out: list[torch.Tensor] = []
    for start in range(0, len(sequences), batch_size):
        idx = list(range(start, min(start + batch_size, len(sequences))))
        per_row = [list(interventions[i]) if interventions else [] for i in idx]
        batched = normalise_interventions([row + [record] for row in per_row], len(idx))
        _, records = forced_forward(model, ForcedBatch.of(model, [list(sequences[i]) for i in idx]), batched, logits=1)
        out.extend(records["esr"][j].float().cpu() for j in range(len(idx)))
    return out


def max_over_span(acts: Sequence[torch.Tensor], starts: Sequence[int]) -> torch.Tensor:
    """[n_sequences, n_latents]: each latent's max over tokens from `starts[i]` on (0 if the span is empty)."""
    rows = []
    for a, s in zip(acts, starts):
        span = a[s:]
        rows.append(span.max(0).values if span.shape[0] else torch.zeros(a.shape[1]))
    return torch.stack(rows)
