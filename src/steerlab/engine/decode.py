"""One-token decode steps of Llama-like attention, written out without the SDPA mask path.

In a decode step every row feeds one token, and transformers' SDPA path spends more on its wrapper
than on the attention itself: it packs the grouped query heads, hands SDPA a boolean mask that the CPU
kernel turns into a bias in every layer, then transposes and copies the result back; the rotary
embedding is applied with seven small ops per tensor. Here, per decode step, the padding mask becomes
one additive bias and the rotary sine one signed table, both computed once for all layers; each
layer then runs its projections (as modules, so their hooks and packed weights apply), the rotary
embedding, the cache update, two batched matmuls and a softmax over its key heads, and `o_proj`.

Only inference (no autograd), only one-token inputs with a KV cache, only the sdpa and eager mask
formats and the attention classes below; anything else runs the original forward. The result equals
the plain path up to fp32 rounding (`tests/test_decode.py`).
"""

from __future__ import annotations

import contextlib
import inspect
from functools import lru_cache
from typing import Any, Iterator

import torch

from steerlab.engine.packed import MAX_ROWS, Fused, fusable
from steerlab.engine.packed import eligible as packed_eligible
from steerlab.models.loading import Model

# Attention classes whose forward is Llama's (Qwen3 adds per-head q/k norms, handled below). Sliding
# windows need nothing here: they live in the mask and the cache layer transformers hands each layer.
SUPPORTED = frozenset({"LlamaAttention", "MistralAttention", "Qwen2Attention", "Qwen3Attention"})
GATED_MLPS = frozenset({"LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP"})  # down_proj(act(gate_proj(x)) * up_proj(x))
MASK_FORMATS = frozenset({"sdpa", "eager"})  # boolean keep-mask (sdpa) or additive float mask (eager)


class _StepTables:
    """What every layer of one forward shares: the rotary tables and the attention bias, computed once.

    Keyed by the identity of the tensors transformers passes to every layer of one forward (a new step
    passes new ones); the key tensors are held, so their identities cannot be reused while remembered.
    """

    def __init__(self) -> None:
        self._rotary_key: torch.Tensor | None = None
        self._rotary: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mask_key: torch.Tensor | None = None
        self._bias: torch.Tensor | None = None

    def rotary(self, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos [B, 1, D] and the sine with its first half negated, so x*cos + swap_halves(x)*sin' is the rotation."""
        if cos is not self._rotary_key:
            half = sin.shape[-1] // 2
            signed = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
            self._rotary_key, self._rotary = cos, (cos, signed)
        return self._rotary  # type: ignore[return-value]

    def bias(self, mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """An additive [B, 1, 1, L] bias from transformers' mask (boolean keep-mask, or already additive)."""
        if mask is None:
            return None
        if mask is not self._mask_key:
            if mask.dtype == torch.bool:
                bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
                bias.masked_fill_(~mask, torch.finfo(dtype).min)
            else:
                bias = mask.to(dtype)
            self._mask_key, self._bias = mask, bias
        return self._bias


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin, with rotate_half's negation folded into the sine table (same products)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((x[..., half:], x[..., :half]), dim=-1) * signed_sin


def _direct_forward(attn: torch.nn.Module, original: Any, tables: _StepTables, qkv: Fused | None, max_rows: int):
    n_heads = attn.config.num_attention_heads
    n_kv = attn.config.num_key_value_heads
    groups = n_heads // n_kv
    head_dim = attn.head_dim
    q_norm, k_norm = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)

    def forward(hidden_states: torch.Tensor, position_embeddings: Any = None, attention_mask: Any = None, **kwargs):
        cache = kwargs.get("cache", kwargs.get("past_key_values", kwargs.get("past_key_value")))
        if (
            hidden_states.shape[1] != 1
            or cache is None
            or position_embeddings is None
            or torch.is_grad_enabled()
            or kwargs.get("output_attentions")
            or attn.config._attn_implementation not in MASK_FORMATS
        ):
            return original(hidden_states, position_embeddings, attention_mask, **kwargs)
        batch = hidden_states.shape[0]
        if qkv is not None and qkv.usable(hidden_states, max_rows):
            query, key, value = qkv(hidden_states)  # one packed matmul for the three projections
        else:
            query, key, value = attn.q_proj(hidden_states), attn.k_proj(hidden_states), attn.v_proj(hidden_states)
        query = query.view(batch, n_heads, head_dim)
        key = key.view(batch, n_kv, head_dim)
        value = value.view(batch, n_kv, 1, head_dim)
        if q_norm is not None:
            query, key = q_norm(query), k_norm(key)
        cos, signed_sin = tables.rotary(*position_embeddings)  # [B, 1, D]: one position per row
        query = _rotate(query, cos, signed_sin)
        key = _rotate(key, cos, signed_sin).unsqueeze(2)
        keys, values = cache.update(key, value, attn.layer_idx, kwargs=kwargs)  # [B, KV heads, L, D]
        grouped = (query * attn.scaling).view(batch, n_kv, groups, head_dim)  # query head h reads key head h // groups
        scores = torch.matmul(grouped, keys.transpose(-1, -2))  # [B, KV heads, groups, L]
        bias = tables.bias(attention_mask, scores.dtype)
        if bias is not None:
            scores = scores + bias
        out = torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(values.dtype), values)
        return attn.o_proj(out.reshape(batch, 1, n_heads * head_dim)), None

    return forward


@lru_cache(maxsize=None)
def _takes_cache(cls: type) -> bool:
    """transformers 5.2x's attention signature (`cache`, `cache.update(..., kwargs=...)`); older ones keep the plain path."""
    return "cache" in inspect.signature(cls.forward).parameters


def _mlp_forward(mlp: torch.nn.Module, original: Any, gate_up: Fused, max_rows: int):
    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 1 or not gate_up.usable(x, max_rows):
            return original(x)
        gate, up = gate_up(x)  # one packed matmul for gate_proj and up_proj
        return mlp.down_proj(mlp.act_fn(gate) * up)

    return forward


def _mlps(model: Model) -> list[torch.nn.Module]:
    """The MLP modules whose forward is down_proj(act(gate_proj(x)) * up_proj(x)), not already patched."""
    out = []
    for layer in model.arch.layers:
        mlp = layer.get_submodule(model.arch.layout.mlp)
        if type(mlp).__name__ in GATED_MLPS and "forward" not in mlp.__dict__:
            out.append(mlp)
    return out


def fusable_groups(model: Model) -> list[list[torch.nn.Linear]]:
    """Linear layers that read one input in a decode step: each attention's q/k/v, each gated MLP's gate/up."""
    allowed = set(packed_eligible(model.hf))  # what the packed path would pack (fp32, CPU, under its size cap)
    groups = [[a.q_proj, a.k_proj, a.v_proj] for a in eligible(model)]
    groups += [[m.gate_proj, m.up_proj] for m in _mlps(model)]
    return [g for g in groups if fusable(g) and all(m in allowed for m in g)]


def eligible(model: Model) -> list[torch.nn.Module]:
    """The attention modules the direct step can run: supported classes, not already patched."""
    modules = []
    for layer in model.arch.layers:
        attn = layer.get_submodule(model.arch.layout.attn)
        if type(attn).__name__ in SUPPORTED and _takes_cache(type(attn)) and "forward" not in attn.__dict__:
            modules.append(attn)
    return modules


@contextlib.contextmanager
def direct_decode(
    model: Model, enabled: bool = True, fused: dict[torch.nn.Module, Fused] | None = None, max_rows: int = MAX_ROWS
) -> Iterator[int]:
    """Within the block, one-token steps of the model's Llama-like attention layers run the direct path.

    fused: packed matmuls for layer groups sharing an input (engine.packed.fused_linears, keyed by the
    group's first layer): q/k/v and gate/up then run as one matmul each, for at most max_rows rows,
    while no hook sits on a member (hooked layers run as themselves).
    Yields how many attention modules were patched (0 when disabled or none is supported); each module
    gets its original forward back on exit. Hooks on the attention and MLP modules, o_proj and down_proj
    still run.
    """
    fused = fused or {}
    patched = []
    tables = _StepTables()
    try:
        for attn in eligible(model) if enabled else []:
            attn.forward = _direct_forward(attn, attn.forward, tables, fused.get(attn.q_proj), max_rows)
            patched.append(attn)
        n_attention = len(patched)
        for mlp in _mlps(model) if enabled else []:
            if mlp.gate_proj in fused:
                mlp.forward = _mlp_forward(mlp, mlp.forward, fused[mlp.gate_proj], max_rows)
                patched.append(mlp)
        yield n_attention
    finally:
        for module in patched:
            del module.forward
