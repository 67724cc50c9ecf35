"""One forward call over a left-padded batch, written once for transformers 4.5x and 5.x."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any, Sequence

import torch


@lru_cache(maxsize=None)
def _forward_params(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls.forward).parameters)


def cache_kwarg(hf: Any) -> str:
    """transformers 5.2x names the KV cache `cache`; earlier releases `past_key_values`."""
    return "cache" if "cache" in _forward_params(type(hf)) else "past_key_values"


def call_model(
    hf: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    cache: Any = None,
    last_only: bool = True,
) -> tuple[torch.Tensor, Any]:
    """Run the model; returns (logits [B, T or 1, V], updated cache). attention_mask None = no row is padded."""
    kwargs: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "position_ids": position_ids,
        "use_cache": cache is not None,
    }
    name = cache_kwarg(hf)
    if cache is not None:
        kwargs[name] = cache
    if last_only and "logits_to_keep" in _forward_params(type(hf)):
        kwargs["logits_to_keep"] = 1
    out = hf(**kwargs)
    logits = out.logits if not last_only or out.logits.shape[1] == 1 else out.logits[:, -1:]
    return logits, getattr(out, name, None)


def new_cache(hf: Any) -> Any:
    """An empty dynamic KV cache for this model."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=hf.config)
    except TypeError:
        return DynamicCache()


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token rows; returns (input_ids, attention_mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids.to(device), mask.to(device)


def positions_from_mask(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """position_ids derived from the mask (0 at each row's first real token) and the same with -1 at padding."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    token_positions = torch.where(attention_mask.bool(), position_ids, torch.full_like(position_ids, -1))
    return position_ids, token_positions
