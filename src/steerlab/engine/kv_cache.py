"""A KV cache whose full-attention layers write into buffers allocated once per batch, instead of growing by concatenation.

transformers' DynamicLayer copies its whole cache at every step (torch.cat); with the final length
known up front (prompt + max_new_tokens) each step writes one slot and hands attention a view.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch


@lru_cache(maxsize=None)
def layer_class() -> type:
    """The layer class, built on first use (transformers is imported lazily, as everywhere in the engine)."""
    from transformers.cache_utils import DynamicLayer

    return type("PreallocatedLayer", (_Preallocated, DynamicLayer), {})


class _Preallocated:
    """Mixed into DynamicLayer: [B, H, capacity, D] buffers; keys/values are views of the filled part."""

    def __init__(self, capacity: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        b, h, _, d = key_states.shape
        self._k = key_states.new_empty((b, h, self.capacity, d))
        self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
        self.length = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        end = self.length + n
        if end > self.capacity:  # longer than planned: fall back to growing (still correct)
            self._grow(end)
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def _grow(self, needed: int) -> None:
        extra = max(needed, 2 * self.capacity) - self.capacity
        self._k = torch.cat([self._k, self._k.new_empty(self._k.shape[:2] + (extra,) + self._k.shape[3:])], dim=2)
        self._v = torch.cat([self._v, self._v.new_empty(self._v.shape[:2] + (extra,) + self._v.shape[3:])], dim=2)
        self.capacity += extra

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            self._k, self._v = self._k[indices], self._v[indices]
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.is_initialized and self.keys is not None and self.keys.numel():
            self.length = self.keys.shape[-2]

    def reset(self) -> None:
        super().reset()
        self.length = 0


def preallocate(cache: Any, capacity: int) -> Any:
    """Swap a DynamicCache's plain full-attention layers for preallocated ones (sliding-window layers stay)."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(layer.is_initialized for layer in layers):
        return cache
    cache.layers = [layer_class()(capacity) if type(layer) is DynamicLayer else layer for layer in layers]
    return cache
