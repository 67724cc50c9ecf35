"""Decode-step matmuls on CPU through oneDNN with each weight reordered once into its blocked layout.

A decode step multiplies a few rows by every weight matrix. There torch's default fp32 GEMM runs well
below the CPU's peak, while oneDNN with a pre-blocked weight is about 1.2x faster on the MLP shapes and
1.9x on the vocabulary head (SmolLM2, 32 rows, this 2-core machine; `make bench`). Many rows (prefill)
keep `F.linear`, which is as fast or faster there.

A packed copy is cached per module and keyed by the weight's content digest (`models.digest`), checked
at the start of every `packed_linears` block, i.e. every `generate` call. Storage pointers and version
counters cannot key it: edits through `.data` (peft's LoRA merge, user scripts) move neither, and a
cache keyed on them once served the pre-merge weights. Hashing every weight costs one read of them per
call (about 50 ms for SmolLM2); a changed weight is re-packed before the call's first matmul. Only fp32
on CPU, only without autograd.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from steerlab.models.digest import tensor_digest

MAX_ROWS = 64  # up to this many rows per matmul use the packed weight (decode); more use F.linear (prefill)
MAX_PACKED_BYTES = 4 << 30  # a packed copy doubles the Linear weights' memory: not for models past this size

# module -> (content digest of the weight, packed weight). Kept outside the modules: an opaque oneDNN tensor
# cannot be pickled or deep-copied, and models are both (Ray ships them, LoRA training copies them).
_PACKED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, torch.Tensor]]" = weakref.WeakKeyDictionary()


def available() -> bool:
    """This torch has oneDNN's linear ops (whether to use them is `EngineOptions.packed`, per call)."""
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


def _fresh_packed_weights(modules: list[torch.nn.Linear]) -> list[torch.Tensor]:
    """Each module's weight in oneDNN's blocked layout, re-packed where the weight's content changed.

    Every weight is hashed (shared weights once); the cached packed copy is used only when its digest
    equals the weight's digest now, so no edit of any kind can leave a stale copy in use.
    """
    digests: dict[tuple[int, tuple[int, ...]], str] = {}
    out = []
    for module in modules:
        weight = module.weight.detach()
        where = (weight.data_ptr(), tuple(weight.shape))
        if where not in digests:
            digests[where] = tensor_digest(weight)
        cached = _PACKED.get(module)
        if cached is None or cached[0] != digests[where]:
            with torch.no_grad():
                cached = (digests[where], torch.ops.mkldnn._reorder_linear_weight(weight))
            _PACKED[module] = cached
        out.append(cached[1])
    return out


def _fast_forward(module: torch.nn.Linear, packed_weight: torch.Tensor, max_rows: int):
    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(1, x.shape[-1])
        if rows > max_rows or x.dtype != torch.float32 or torch.is_grad_enabled() or x.device.type != "cpu":
            return F.linear(x, module.weight, module.bias)
        return torch.ops.mkldnn._linear_pointwise(x, packed_weight, module.bias, "none", [], "")

    return forward


class Fused:
    """Linear layers that read the same input, run as one packed matmul whose output is split back per layer."""

    def __init__(self, modules: list[torch.nn.Linear], packed_weight: torch.Tensor, bias: torch.Tensor | None):
        self.modules = modules
        self.packed_weight, self.bias = packed_weight, bias
        self.sizes = [m.out_features for m in modules]

    def usable(self, x: torch.Tensor, max_rows: int) -> bool:
        """Few rows, fp32 on CPU, no autograd, and no hook on any member (a hook must see its own layer run)."""
        return (
            x.numel() // max(1, x.shape[-1]) <= max_rows
            and x.dtype == torch.float32
            and x.device.type == "cpu"
            and not torch.is_grad_enabled()
            and not any(m._forward_hooks or m._forward_pre_hooks or "forward" in m.__dict__ for m in self.modules)
            and not (torch.nn.modules.module._global_forward_hooks or torch.nn.modules.module._global_forward_pre_hooks)
        )

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")
        return list(out.split(self.sizes, dim=-1))


# first member -> (content digests of the members' weights and biases, the fused packed weight, the fused bias)
_FUSED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, torch.Tensor, torch.Tensor | None]]" = (
    weakref.WeakKeyDictionary()
)


def fusable(group: list[Any]) -> bool:
    """Plain fp32 CPU Linear layers with one input width, the same bias presence (so one matmul computes all)."""
    return (
        available()
        and all(type(m) is torch.nn.Linear for m in group)
        and all(m.weight.device.type == "cpu" and m.weight.dtype == torch.float32 for m in group)
        and len({m.in_features for m in group}) == 1
        and len({m.bias is None for m in group}) == 1
    )


def _fused_key(group: list[torch.nn.Linear]) -> tuple:
    return tuple(tensor_digest(t.detach()) for m in group for t in (m.weight, m.bias) if t is not None)


def _fresh_fused(groups: list[list[torch.nn.Linear]]) -> dict[torch.nn.Module, Fused]:
    """Each group's concatenated weight in oneDNN's blocked layout, re-packed when any member's content changed.

    The concatenations go through one scratch buffer, freed at the end: a fresh temporary per group (about 280 MB
    over SmolLM2's 60 groups) would stay in the C allocator's heap after being freed, between the long-lived
    packed copies, and the process would keep it as resident memory.
    """
    keys = {id(g[0]): _fused_key(g) for g in groups}
    stale = [g for g in groups if (_FUSED.get(g[0]) or (None,))[0] != keys[id(g[0])]]
    if stale:
        scratch = torch.empty(max(sum(m.out_features for m in g) * g[0].in_features for g in stale))
        with torch.no_grad():
            for g in stale:
                weight = scratch[: sum(m.out_features for m in g) * g[0].in_features].view(-1, g[0].in_features)
                torch.cat([m.weight.detach() for m in g], out=weight)
                bias = None if g[0].bias is None else torch.cat([m.bias.detach() for m in g])
                _FUSED[g[0]] = (keys[id(g[0])], torch.ops.mkldnn._reorder_linear_weight(weight), bias)
        del scratch
    return {g[0]: Fused(list(g), _FUSED[g[0]][1], _FUSED[g[0]][2]) for g in groups}


@contextmanager
def fused_linears(groups: list[list[torch.nn.Linear]], enabled: bool = True) -> Iterator[dict[torch.nn.Module, Fused]]:
    """Within the block, each fusable group (e.g. q/k/v, gate/up) has one packed matmul; yields first member -> Fused.

    Checked against the weights' content on entry, like `packed_linears`. The layers themselves are not
    patched: a caller that knows the group shares its input (engine.decode) calls the Fused object.
    """
    yield _fresh_fused([g for g in groups if fusable(g)]) if enabled else {}


@contextmanager
def packed_linears(hf: Any, max_rows: int = MAX_ROWS, skip: frozenset = frozenset()) -> Iterator[int]:
    """Within the block, small-row fp32 CPU matmuls of `hf`'s Linear layers use packed weights; yields how many.

    The packed weights are checked against the weights' content on entry (see the module docstring), so
    edit weights between blocks, never inside one. max_rows <= 0 switches the fast path off (nothing is
    patched). Forward hooks still run (only the module's own matmul changes); results equal F.linear up to
    fp32 rounding.

    Args:
        hf: the Hugging Face module whose `nn.Linear` layers to patch.
        max_rows: matmuls over at most this many rows use the packed weight.
        skip: Linear modules left alone (members of fused groups: one packed copy of their weights is enough).

    Returns:
        A context manager yielding the number of patched Linear modules.
    """
    modules = [m for m in (eligible(hf) if max_rows > 0 else []) if "forward" not in m.__dict__ and m not in skip]
    patched = []
    try:
        for m, weight in zip(modules, _fresh_packed_weights(modules)):
            m.forward = _fast_forward(m, weight, max_rows)
            patched.append(m)
        yield len(patched)
    finally:
        for m in patched:
            del m.forward


def release(hf: Any) -> None:
    """Drop every cached packed weight (frees the second copy of the Linear weights)."""
    for m in _linears(hf):
        _PACKED.pop(m, None)
        _FUSED.pop(m, None)
