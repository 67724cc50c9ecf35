"""Choosing the next token: greedy, temperature, top-k, top-p, repetition penalty.

Sampling uses the Gumbel-max trick with noise from a counter-based hash of (row seed, step, token),
so a row's sample depends only on its own seed and history, never on the batch it runs in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from steerlab.errors import SteerlabError, check_number

_M32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; temperature 0 is greedy."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p", "repetition_penalty"):
            check_number(getattr(self, name), name)  # NaN passes every comparison below
        if self.temperature < 0:
            raise SteerlabError("temperature must be >= 0 (0 is greedy).")
        if not 0 < self.top_p <= 1:
            raise SteerlabError("top_p must be in (0, 1].")
        if self.top_k < 0:
            raise SteerlabError("top_k must be >= 0 (0 turns it off).")
        if self.repetition_penalty <= 0:
            raise SteerlabError("repetition_penalty must be > 0 (1 turns it off).")

    def to_dict(self) -> dict:
        return asdict(self)


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply), computed in int64 without overflow."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x4B1F6A8D) & _M32
    return x ^ (x >> 16)


def uniform_noise(seeds: torch.Tensor, step: int, vocab: int) -> torch.Tensor:
    """U(0,1) noise [B, V] that is a pure function of (seed, step, token id)."""
    row = _mix32((seeds.long() & _M32) ^ _mix32(torch.full_like(seeds.long(), step + 0x9E3779B9 & _M32)))
    tokens = torch.arange(vocab, device=seeds.device, dtype=torch.long)
    bits = _mix32(row.unsqueeze(1) ^ _mix32(tokens).unsqueeze(0))
    return ((bits >> 8).float() + 0.5) / float(1 << 24)


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive / multiply negative logits of tokens already in the row (the CTRL rule, as in HF)."""
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def choose(
    logits: torch.Tensor, sampling: Sampling, seeds: torch.Tensor, step: int, seen: torch.Tensor | None
) -> torch.Tensor:
    """Next token per row from last-position logits [B, V] (fp32)."""
    if seen is not None and sampling.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, sampling.repetition_penalty)
    if sampling.temperature == 0:
        return logits.argmax(-1)
    logits = logits / sampling.temperature
    if sampling.top_k:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= sampling.top_p  # keep the token that crosses p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    gumbel = -torch.log(-torch.log(uniform_noise(seeds, step, logits.shape[-1])))
    return (logits + gumbel).argmax(-1)
