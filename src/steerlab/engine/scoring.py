"""Teacher-forced scoring and activation harvesting: one forward over given text, with interventions.

`forced_forward` is the one teacher-forced forward of the package: every experiment that reads logits or
activations of given token rows (scores, traces, SAE readouts, circuit losses, attribution) runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from steerlab.engine.forward import _forward_params, left_pad, positions_from_mask
from steerlab.engine.generate import InterventionsArg, normalise_interventions
from steerlab.errors import SteerlabError
from steerlab.interventions.hooks import apply
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model, Prompt


@dataclass
class ForcedBatch:
    """Left-padded token rows for one teacher-forced forward; row i's first prompt_lengths[i] tokens are its prompt."""

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T] 0 at each row's first real token
    token_positions: torch.Tensor  # [B, T] the same, -1 at padding
    prompt_lengths: torch.Tensor  # [B]

    @classmethod
    def of(
        cls, model: Model, rows: Sequence[Sequence[int]], prompt_lengths: Sequence[int] | None = None
    ) -> "ForcedBatch":
        """Left-pad token rows with the model's pad id; prompt_lengths None = every token is prompt."""
        input_ids, mask = left_pad(rows, model.pad_id, model.device)
        position_ids, token_positions = positions_from_mask(mask)
        lengths = mask.sum(-1) if prompt_lengths is None else torch.tensor(list(prompt_lengths), device=model.device)
        return cls(input_ids, mask, position_ids, token_positions, lengths)


def forced_forward(
    model: Model, batch: ForcedBatch, interventions: Sequence[Intervention] = (), *, logits: int = 0
) -> tuple[torch.Tensor, dict[str, list[torch.Tensor]]]:
    """One forward over given token rows with interventions installed (grad follows the caller's mode).

    Args:
        model: the model to run.
        batch: the rows, their positions and prompt lengths (which set what "prompt" and "generated" mean).
        interventions: installed for this forward only; Record-ed activations come back in the second value.
        logits: how many of the last positions need logits (0 = every position; 1 skips most of the
            vocabulary projection when only activations are wanted).

    Returns:
        (logits [B, T or `logits`, V] in the model's dtype, Record name -> one [n_tokens, width] tensor per row).
    """
    kwargs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "use_cache": False,
    }
    if logits and "logits_to_keep" in _forward_params(type(model.hf)):
        kwargs["logits_to_keep"] = logits
    with apply(model, list(interventions)) as session:
        session.set_step(batch.token_positions, batch.prompt_lengths)
        out = model.hf(**kwargs).logits
        records = session.records()
    return (out[:, -logits:] if logits and out.shape[1] != logits else out), records


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
    """Log-probs of each continuation after its prompt, teacher-forced (continuation tokens count as 'generated').

    Args:
        model: the loaded model.
        prompts: user messages (chat template applied) or token-id lists, one per continuation.
        continuations: the text scored after each prompt.
        interventions: a list applied to every row, or one list per prompt; None for none.
        chat: apply the chat template to the prompts (None = when the tokenizer has one).
        batch_size: rows per forward pass.
        grad: keep the graph (for losses through masks or steering parameters); otherwise inference mode.

    Returns:
        One Score per prompt: the continuation's token ids and their log-probs.
    """
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
            batch = ForcedBatch.of(model, [prompt_ids[i] + cont_ids[i] for i in idx], [len(prompt_ids[i]) for i in idx])
            logits, _ = forced_forward(model, batch, ivs)
            logprobs = torch.log_softmax(logits.float(), -1)
            input_ids = batch.input_ids
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
    """Run a forward over each text and return its Record-ed activations.

    Args:
        model: the loaded model.
        texts: plain texts (no chat template by default) or token-id lists.
        interventions: Record specs (and any steering to apply while recording), for every row or per row.
        chat: apply the chat template (default False: the text as written).
        batch_size: rows per forward pass.

    Returns:
        One dict per text: record name -> activations [n_tokens, width] of that text's real tokens.
    """
    if not texts:
        raise SteerlabError("The text list is empty; give at least one text.")
    batched = normalise_interventions(interventions, len(texts))
    encoded = [model.encode(t, chat=chat) for t in texts]
    results: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(texts), batch_size):
        idx = list(range(start, min(start + batch_size, len(texts))))
        ivs = [iv.rows(idx) if iv.batch_size else iv for iv in batched]
        _, records = forced_forward(model, ForcedBatch.of(model, [encoded[i] for i in idx]), ivs, logits=1)
        results.extend({name: rows[j] for name, rows in records.items()} for j in range(len(idx)))
    return results
