"""Content digests of weights: what the numbers are, never where they live.

A tensor's storage pointer and autograd version counter do not move when its values change through
`.data` (peft merges that way, and so do many user scripts), so neither can key a cache of anything
derived from weights. These digests read every byte (xxh3-128: about 50 ms for SmolLM2's 540 MB of
fp32 weights on one CPU core), so two weight sets share a digest only if they are equal bit for bit
(up to a 2^-128 collision).
"""

from __future__ import annotations

from typing import Iterable

import torch
import xxhash

_CHUNK_BYTES = 256 << 20  # tensors off the CPU are hashed through host copies of at most this size


def _update(h: "xxhash.xxh3_128", tensor: torch.Tensor) -> None:
    flat = tensor.detach().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    if flat.numel() == 0:
        return
    raw = flat.contiguous().view(torch.uint8)
    for start in range(0, raw.numel(), _CHUNK_BYTES):
        part = raw[start : start + _CHUNK_BYTES]
        if part.device.type != "cpu":
            part = part.cpu()
        h.update(memoryview(part.numpy()))


def tensor_digest(tensor: torch.Tensor) -> str:
    """A 128-bit hex digest of a tensor's dtype, shape and every byte of its values.

    Args:
        tensor: any tensor, on any device (non-CPU tensors are copied to the host in chunks).

    Returns:
        32 hex characters; equal for two tensors exactly when dtype, shape and bytes are equal.
    """
    h = xxhash.xxh3_128()
    h.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    _update(h, tensor)
    return h.hexdigest()


def weights_digest(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> str:
    """A 128-bit hex digest of named tensors (a model's parameters and buffers), each storage read once.

    Args:
        named_tensors: (name, tensor) pairs, e.g. `module.state_dict(keep_vars=True).items()`; tied
            tensors that share storage are hashed once, under their first name, plus their other names.

    Returns:
        32 hex characters that change whenever any value, name, dtype or shape changes.
    """
    h = xxhash.xxh3_128()
    seen: dict[tuple[int, int, tuple[int, ...], torch.dtype], str] = {}
    for name, tensor in named_tensors:
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.dtype)
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if key in seen:
            h.update(f"tied:{seen[key]}|".encode())
            continue
        seen[key] = name
        _update(h, tensor)
    return h.hexdigest()
