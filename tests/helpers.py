"""Reference computations the equivalence tests compare against."""

from __future__ import annotations

import torch

from steerlab.engine.forward import call_model, left_pad, positions_from_mask
from steerlab.interventions import apply


def full_recompute_logits(model, prompt_ids, generated_ids, interventions=()):
    """Logits at every position of prompt+generated from ONE uncached forward with the same interventions."""
    ids = list(prompt_ids) + list(generated_ids)
    input_ids, mask = left_pad([ids], model.tokenizer.pad_token_id, model.device)
    position_ids, token_positions = positions_from_mask(mask)
    with torch.inference_mode(), apply(model, interventions) as session:
        session.set_step(token_positions, torch.tensor([len(prompt_ids)]))
        logits, _ = call_model(model.hf, input_ids, mask, position_ids, None, last_only=False)
    return logits[0].float()


def full_recompute_records(model, prompt_ids, generated_ids, interventions, layer):
    """resid_post of `layer` at every position from one uncached forward with the same interventions."""
    from steerlab.interventions import Record

    ids = list(prompt_ids) + list(generated_ids)
    input_ids, mask = left_pad([ids], model.tokenizer.pad_token_id, model.device)
    position_ids, token_positions = positions_from_mask(mask)
    ivs = list(interventions) + [Record(layer, positions="all", name="ref")]
    with torch.inference_mode(), apply(model, ivs) as session:
        session.set_step(token_positions, torch.tensor([len(prompt_ids)]))
        call_model(model.hf, input_ids, mask, position_ids, None, last_only=False)
        return session.records()["ref"][0]
