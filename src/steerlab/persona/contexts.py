"""Top contexts of a latent: the answer tokens where it fires most, with a few tokens of text around them."""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Sequence

import torch

from steerlab.models.loading import Model
from steerlab.persona.diff import response_latents
from steerlab.sae.core import Sae


@dataclass(frozen=True)
class Context:
    """One firing: its activation, the row it came from, and the snippet (before, peak token, after)."""

    activation: float
    row: int
    before: str
    token: str
    after: str

    def text(self) -> str:
        """The snippet with the peak token in [[ ]]."""
        return f"{self.before}[[{self.token}]]{self.after}"


def top_contexts(
    model: Model,
    sae: Sae,
    prompt_ids: Sequence[list[int]],
    response_ids: Sequence[list[int]],
    latents: Sequence[int],
    *,
    k: int = 5,
    before: int = 10,
    after: int = 3,
    batch_size: int = 8,
) -> dict[int, list[Context]]:
    """For each latent, the k answer tokens (over all rows) with the highest activation in `model`, highest first."""
    latents = [int(i) for i in latents]
    for i in latents:
        sae.check_latent(i)
    heaps: dict[int, list[tuple[float, int, int]]] = {i: [] for i in latents}
    for row, z in enumerate(response_latents(model, sae, prompt_ids, response_ids, latents, batch_size)):
        z = z.float().cpu()
        for col, latent in enumerate(latents):
            for pos in torch.nonzero(z[:, col] > 0).flatten().tolist():
                item = (float(z[pos, col]), row, pos)
                heap = heaps[latent]
                (heapq.heappush if len(heap) < k else heapq.heappushpop)(heap, item)
    decode = model.tokenizer.decode
    out: dict[int, list[Context]] = {}
    for latent, heap in heaps.items():
        rows = []
        for act, row, pos in sorted(heap, reverse=True):
            ids = response_ids[row]
            rows.append(
                Context(
                    act,
                    row,
                    decode(ids[max(0, pos - before) : pos]),
                    decode(ids[pos : pos + 1]),
                    decode(ids[pos + 1 : pos + 1 + after]),
                )
            )
        out[latent] = rows
    return out
