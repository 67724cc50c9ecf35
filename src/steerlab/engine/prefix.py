"""Shared-prefix prefill: the prompt tokens every row shares are computed once, below the first layer an intervention hooks.

Trials of one experiment begin with the same chat header (SmolLM2: the first 27 of about 40 tokens), and
below the first layer that holds an intervention's hook, those tokens' keys and values are the same in every row.
One row computes them and the batch gets copies. From that layer on, each row runs its own forward over the
prefix, so steering at every position (the ESR rule) still happens there; rows whose edits are equal (an ESR
batch's trials of one latent at one strength, its unsteered rows) run it once per group and share the result;
when every row gets the same edits (no per-row field), the one row runs them too and the whole prefix is shared. Then the rest of each prompt
runs as usual. Rows are laid out [prefix][padding][own suffix], with positions taken from the mask, so
every token keeps its absolute position.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch

from steerlab.engine.forward import cache_kwarg, call_model, new_cache, positions_from_mask
from steerlab.interventions.hooks import Session
from steerlab.models.loading import Model

MIN_PREFIX = 4  # shorter shared prefixes are not worth a second forward


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own (its last logit)."""
    if len(rows) < 2:
        return 0
    limit = min(len(r) for r in rows) - 1
    n = 0
    first = rows[0]
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def shared_layers(model: Model, session: Session, cache: Any, prefix: int) -> int:
    """How many leading layers can share the prefix's keys and values (0 = do not share)."""
    if prefix < MIN_PREFIX:
        return 0
    if not _embeds_pass_through(model):
        return 0
    from transformers.cache_utils import DynamicLayer

    from steerlab.engine.kv_cache import layer_class

    if not all(type(layer) in (DynamicLayer, layer_class()) for layer in getattr(cache, "layers", None) or [None]):
        return 0  # sliding-window or other special cache layers keep the plain path
    first = session.first_hooked_layer()
    if first is None:
        return 0
    return model.arch.n_layers if session.rows_alike() else first  # alike rows: the prefix's edits are alike too


def layout(
    encoded: Sequence[Sequence[int]], prefix: int, pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """[prefix][left padding][suffix] ids and attention mask for rows sharing their first `prefix` tokens."""
    width = max(len(r) for r in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    ids[:, :prefix] = torch.tensor(list(encoded[0][:prefix]), dtype=torch.long)
    mask[:, :prefix] = 1
    for i, row in enumerate(encoded):
        suffix = row[prefix:]
        ids[i, width - len(suffix) :] = torch.tensor(list(suffix), dtype=torch.long)
        mask[i, width - len(suffix) :] = 1
    return ids.to(device), mask.to(device)


def prefill(
    model: Model,
    session: Session,
    cache: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    prompt_lengths: torch.Tensor,
    prefix: int,
    shared: int,
) -> tuple[torch.Tensor, Any]:
    """Fill `cache` for the whole prompt with the prefix computed once below layer `shared`; returns (last logits, cache)."""
    hf, arch = model.hf, model.arch
    batch = input_ids.shape[0]
    position_ids, token_positions = positions_from_mask(attention_mask)
    decoder = arch.decoder
    one = new_cache(hf)
    captured: list[torch.Tensor] = []
    whole = shared == arch.n_layers  # every layer shared: the one row runs with the (row-independent) hooks on
    session.set_step(token_positions[:1, :prefix], prompt_lengths[:1])
    with contextlib.nullcontext() if whole else session.paused():
        handle = None
        if not whole:
            handle = arch.layers[shared].register_forward_pre_hook(
                lambda mod, args, kwargs: captured.append(args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True,
            )
        try:
            with _only_layers(decoder, 0, min(shared + 1, arch.n_layers)):  # layer `shared` runs only to be captured
                decoder(
                    input_ids=input_ids[:1, :prefix],
                    position_ids=position_ids[:1, :prefix],
                    use_cache=True,
                    **{cache_kwarg(decoder): one},
                )
        finally:
            if handle is not None:
                handle.remove()
    if not whole:  # the hooked layers run per row over the prefix, hooks on (empty layer 0 = past length 0)
        session.set_step(token_positions[:, :prefix], prompt_lengths)
        groups = session.row_groups()
        if groups is not None and len(groups[0]) < batch:  # rows with equal edits: once per group, then copied
            first, group = groups
            part = new_cache(hf)
            with session.only_rows(first):
                session.set_step(token_positions[first, :prefix], prompt_lengths[first])
                _hooked_prefix(decoder, shared, arch.n_layers, captured[0], position_ids[first, :prefix], part)
            for i in range(shared, arch.n_layers):
                layer = part.layers[i]
                cache.layers[i].update(layer.keys[group], layer.values[group])
        else:
            _hooked_prefix(decoder, shared, arch.n_layers, captured[0], position_ids[:, :prefix], cache)
    for i in range(shared):
        k, v = one.layers[i].keys, one.layers[i].values
        cache.layers[i].update(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1))  # the cache copies them
    session.set_step(token_positions[:, prefix:], prompt_lengths)
    padded = not bool(attention_mask.all())
    return call_model(hf, input_ids[:, prefix:], attention_mask if padded else None, position_ids[:, prefix:], cache)


def _hooked_prefix(
    decoder: Any, start: int, stop: int, hidden: torch.Tensor, position_ids: torch.Tensor, cache
) -> None:
    """Run layers [start, stop) over the shared prefix's residual, one row per row of position_ids, into cache."""
    with _only_layers(decoder, start, stop):
        decoder(
            inputs_embeds=hidden.expand(position_ids.shape[0], -1, -1).contiguous(),
            position_ids=position_ids,
            use_cache=True,
            **{cache_kwarg(decoder): cache},
        )


def _embeds_pass_through(model: Model) -> bool:
    """The decoder feeds `inputs_embeds` to its first layer unchanged, so a captured residual can be fed back.

    Not GPT-2 (adds learned positions to them), nor Gemma under transformers 4.x (scales them by sqrt(d)
    in the forward; 5.x scales inside the embedding module, which `inputs_embeds` skips).
    """
    family = model.arch.model_type
    if family in ("llama", "mistral", "qwen2", "qwen3"):
        return True
    return family.startswith("gemma") and hasattr(getattr(model.arch.decoder, "embed_tokens", None), "embed_scale")


@contextlib.contextmanager
def _only_layers(decoder: Any, start: int, stop: int) -> Iterator[None]:
    """Let the decoder run only layers [start, stop); each keeps its own index into the KV cache."""
    full = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(full)[start:stop])
    try:
        yield
    finally:
        decoder.layers = full
