"""Teacher-forced forward passes over (prompt, response) pairs, with logits only where the response is.

Rows are left-padded, so every response ends at the right edge; asking the model for the last K
logits (K = longest response) skips the vocabulary projection for prompt tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from steerlab.engine.forward import positions_from_mask
from steerlab.engine.scoring import ForcedBatch, forced_forward
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model, Prompt


@dataclass
class PairBatch(ForcedBatch):
    """Token ids of prompt+response rows and which of the last K logits predict a response token."""

    targets: torch.Tensor  # [B, K] response token ids (0 where absent)
    target_mask: torch.Tensor  # [B, K] bool

    @property
    def k(self) -> int:
        return self.targets.shape[1]


def response_ids(model: Model, response: str, end: bool = True) -> list[int]:
    """The response's tokens, plus the end-of-turn token so a model learns to stop."""
    ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    if end and model.stop_token_ids:
        ids = ids + [model.stop_token_ids[0]]
    return ids


def make_batch(
    model: Model, prompts: Sequence[Prompt], responses: Sequence[str], end: bool = True, chat: bool | None = None
) -> PairBatch:
    """Encode pairs once (the chat template applied exactly once) into a left-padded batch."""
    prompt_ids = [model.encode(p, chat=chat) for p in prompts]
    resp_ids = [response_ids(model, r, end) for r in responses]
    rows = ForcedBatch.of(model, [p + r for p, r in zip(prompt_ids, resp_ids)], [len(p) for p in prompt_ids])
    k = max(len(r) for r in resp_ids)
    targets = torch.zeros(len(resp_ids), k, dtype=torch.long)
    target_mask = torch.zeros(len(resp_ids), k, dtype=torch.bool)
    for i, r in enumerate(resp_ids):
        targets[i, k - len(r) :] = torch.tensor(r)
        target_mask[i, k - len(r) :] = True
    return PairBatch(**vars(rows), targets=targets.to(model.device), target_mask=target_mask.to(model.device))


def concat(batches: Sequence[PairBatch], model: Model) -> PairBatch:
    """Stack several batches into one forward (re-padding to a common width)."""
    width = max(b.input_ids.shape[1] for b in batches)
    k = max(b.k for b in batches)

    def left(t: torch.Tensor, w: int, value) -> torch.Tensor:
        return torch.nn.functional.pad(t, (w - t.shape[1], 0), value=value)

    ids = torch.cat([left(b.input_ids, width, model.pad_id) for b in batches])
    mask = torch.cat([left(b.attention_mask, width, 0) for b in batches])
    position_ids, token_positions = positions_from_mask(mask)
    return PairBatch(
        ids,
        mask,
        position_ids,
        token_positions,
        torch.cat([b.prompt_lengths for b in batches]),
        torch.cat([left(b.targets, k, 0) for b in batches]),
        torch.cat([left(b.target_mask, k, False) for b in batches]),
    )


def response_logits(model: Model, batch: PairBatch, interventions: Sequence[Intervention] = ()) -> torch.Tensor:
    """[B, K, V] fp32 logits predicting each response slot (grad follows the caller's mode)."""
    logits, _ = forced_forward(model, batch, interventions, logits=batch.k + 1)
    return logits[:, :-1].float()


def token_logprobs(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """[B, K] log-prob of each response token (0 where the slot is padding)."""
    lp = torch.log_softmax(logits, -1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    return lp * batch.target_mask


def mean_nll(logits: torch.Tensor, batch: PairBatch) -> torch.Tensor:
    """Mean negative log-likelihood over response tokens."""
    return -token_logprobs(logits, batch).sum() / batch.target_mask.sum().clamp(min=1)
