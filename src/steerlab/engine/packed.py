"""Decode-step matmuls on CPU through oneDNN with each weight reordered once into its blocked layout.

A decode step multiplies a few rows by every weight matrix. There torch's default fp32 GEMM runs well
below the CPU's peak, while oneDNN with a pre-blocked weight is about 1.2x faster on the MLP shapes and
1.9x on the vocabulary head (SmolLM2, 32 rows, this 2-core machine; `make bench`). Many rows (prefill)
keep `F.linear`, which is as fast or faster there. A packed copy is cached per module and rebuilt when
its weight changes (new storage or an in-place edit bumps the version counter), so merged LoRA weights
and edited weights are always what runs. Only fp32 on CPU, only without autograd.
"""

from __future__ import annotations

import os
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

MAX_ROWS = 64  # up to this many rows per matmul use the packed weight (decode); more use F.linear (prefill)
MAX_PACKED_BYTES = 4 << 30  # a packed copy doubles the Linear weights' memory: not for models past this size

# module -> ((data_ptr, version, shape), packed weight). Kept outside the modules: an opaque oneDNN tensor
# cannot be pickled or deep-copied, and models are both (Ray ships them, LoRA training copies them).
_PACKED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


def available() -> bool:
    """oneDNN is built in and not switched off (STEERLAB_PACKED_MATMUL=0 disables the fast path)."""
    if os.environ.get("STEERLAB_PACKED_MATMUL", "1") == "0":
        return False
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _linears(hf: Any) -> list[torch.nn.Linear]:
    return [m for m in hf.modules() if type(m) is torch.nn.Linear]


def eligible(hf: Any) -> list[torch.nn.Linear]:
    """The Linear modules worth packing: fp32 weights on CPU, the whole set under MAX_PACKED_BYTES."""
    if not available():
        return []
    linears = [m for m in _linears(hf) if m.weight.device.type == "cpu" and m.weight.dtype == torch.float32]
    seen: set[int] = set()
    total = 0
    for m in linears:
        if m.weight.data_ptr() not in seen:
            seen.add(m.weight.data_ptr())
            total += m.weight.numel() * m.weight.element_size()
    return linears if total <= MAX_PACKED_BYTES else []


def _packed_weight(module: torch.nn.Linear) -> torch.Tensor:
    """The module's weight in oneDNN's blocked layout, rebuilt when the weight is replaced or edited."""
    weight = module.weight
    key = (weight.data_ptr(), weight._version, tuple(weight.shape))
    cached = _PACKED.get(module)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        _PACKED[module] = cached
    return cached[1]


def _fast_forward(module: torch.nn.Linear, max_rows: int):
    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(1, x.shape[-1])
        if rows > max_rows or x.dtype != torch.float32 or torch.is_grad_enabled() or x.device.type != "cpu":
            return F.linear(x, module.weight, module.bias)
        return torch.ops.mkldnn._linear_pointwise(x, _packed_weight(module), module.bias, "none", [], "")

    return forward


@contextmanager
def packed_linears(hf: Any, max_rows: int = MAX_ROWS) -> Iterator[int]:
    """Within the block, small-row fp32 CPU matmuls of `hf`'s Linear layers use packed weights; yields how many.

    max_rows <= 0 switches the fast path off (nothing is patched).
    Forward hooks still run (only the module's own matmul changes); results equal F.linear up to fp32 rounding.
    """
    modules = eligible(hf) if max_rows > 0 else []
    patched = []
    try:
        for m in modules:
            if "forward" not in m.__dict__:
                m.forward = _fast_forward(m, max_rows)
                patched.append(m)
        yield len(patched)
    finally:
        for m in patched:
            del m.forward


def release(hf: Any) -> None:
    """Drop every cached packed weight (frees the second copy of the Linear weights)."""
    for m in _linears(hf):
        _PACKED.pop(m, None)
