"""Teacher-forced scoring and activation harvesting: one forward over given text, with interventions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from steerlab.engine.forward import call_model, left_pad, positions_from_mask
from steerlab.engine.generate import InterventionsArg, normalise_interventions
from steerlab.errors import SteerlabError
from steerlab.interventions.hooks import apply
from steerlab.models.loading import Model, Prompt


@dataclass
class Score:
    """Log-probabilities of a continuation's tokens given its prompt."""

    token_ids: list[int]
    logprobs: torch.Tensor  # [n_tokens] fp32

    @property
    def total(self) -> float:
        return float(self.logprobs.sum())

    @property
    def mean(self) -> float:
        return float(self.logprobs.mean()) if len(self.logprobs) else 0.0


def score(
    model: Model,
    prompts: Sequence[Prompt],
    continuations: Sequence[str],
    interventions: InterventionsArg = None,
    *,
    chat: bool | None = None,
    batch_size: int = 16,
    grad: bool = False,
) -> list[Score]:
    """Log-probs of each continuation after its prompt (continuation tokens count as 'generated')."""
    if len(prompts) != len(continuations):
        raise SteerlabError(f"Got {len(prompts)} prompts but {len(continuations)} continuations; give one each.")
    if not prompts:
        raise SteerlabError("The prompt list is empty; give at least one prompt.")
    batched = normalise_interventions(interventions, len(prompts))
    prompt_ids = [model.encode(p, chat=chat) for p in prompts]
    cont_ids = [model.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
    out: list[Score] = []
    context = torch.enable_grad() if grad else torch.inference_mode()
    with context:
        for start in range(0, len(prompts), batch_size):
            idx = list(range(start, min(start + batch_size, len(prompts))))
            ivs = [iv.rows(idx) if iv.batch_size else iv for iv in batched]
            rows = [prompt_ids[i] + cont_ids[i] for i in idx]
            input_ids, mask = left_pad(rows, model.tokenizer.pad_token_id or 0, model.device)
            position_ids, token_positions = positions_from_mask(mask)
            prompt_lengths = torch.tensor([len(prompt_ids[i]) for i in idx], device=model.device)
            with apply(model, ivs) as session:
                session.set_step(token_positions, prompt_lengths)
                logits, _ = call_model(model.hf, input_ids, mask, position_ids, None, last_only=False)
            logprobs = torch.log_softmax(logits.float(), -1)
            width = input_ids.shape[1]
            for j, i in enumerate(idx):
                n = len(cont_ids[i])
                targets = input_ids[j, width - n :]
                lp = logprobs[j, width - n - 1 : width - 1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
                out.append(Score(cont_ids[i], lp if grad else lp.cpu()))
    return out


@torch.inference_mode()
def trace(
    model: Model,
    texts: Sequence[Prompt],
    interventions: InterventionsArg,
    *,
    chat: bool | None = False,
    batch_size: int = 16,
) -> list[dict[str, torch.Tensor]]:
    """Run a forward over each text and return its Record-ed activations (name -> [n_tokens, width])."""
    if not texts:
        raise SteerlabError("The text list is empty; give at least one text.")
    batched = normalise_interventions(interventions, len(texts))
    encoded = [model.encode(t, chat=chat) for t in texts]
    results: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(texts), batch_size):
        idx = list(range(start, min(start + batch_size, len(texts))))
        ivs = [iv.rows(idx) if iv.batch_size else iv for iv in batched]
        input_ids, mask = left_pad([encoded[i] for i in idx], model.tokenizer.pad_token_id or 0, model.device)
        position_ids, token_positions = positions_from_mask(mask)
        with apply(model, ivs) as session:
            session.set_step(token_positions, mask.sum(-1))
            call_model(model.hf, input_ids, mask, position_ids, None)
            records = session.records()
        results.extend({name: rows[j] for name, rows in records.items()} for j in range(len(idx)))
    return results
