"""How the hf engine computes, never what: each speed path is a switch, tested equal to the plain fp32 path.

One `EngineOptions` goes to `generate(..., engine_options=...)` and holds for that call only; nothing in
the engine reads a module global. `EngineOptions.plain()` turns every speed path off (the oracle's loop).
Every speed path is on by default; the environment variables below set a default for a whole process (a shell
or a CLI run), and an explicit argument always wins over them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

ENV = {
    "packed": "STEERLAB_PACKED_MATMUL",
    "share_prefix": "STEERLAB_SHARED_PREFIX",
    "preallocate": "STEERLAB_PREALLOCATE_CACHE",
    "direct_decode": "STEERLAB_DIRECT_DECODE",
}


def _from_env(name: str, default: str = "1") -> bool:
    return os.environ.get(ENV[name], default) != "0"


@dataclass(frozen=True)
class EngineOptions:
    """The engine's speed paths for one `generate` call; False switches one off.

    packed: decode-step matmuls through oneDNN with weights reordered once (engine.packed; fp32 on CPU).
    share_prefix: the rows' common prompt start computed once below the first hooked layer (engine.prefix).
    preallocate: KV-cache buffers allocated once per batch instead of growing by concatenation (engine.kv_cache).
    direct_decode: one-token decode steps of Llama-like layers without the SDPA mask path, with the
        per-step rotary, norm and attention-bias work done once per step, not once per layer (engine.decode).
    """

    packed: bool = field(default_factory=lambda: _from_env("packed"))
    share_prefix: bool = field(default_factory=lambda: _from_env("share_prefix"))
    preallocate: bool = field(default_factory=lambda: _from_env("preallocate"))
    # on since the quiet-machine bench of 2026-12-02: 1.02-1.09x the SDPA step (median of 5) at batch 1, 8 and 32
    direct_decode: bool = field(default_factory=lambda: _from_env("direct_decode"))

    @classmethod
    def plain(cls) -> "EngineOptions":
        """Every speed path off: the plain transformers forward in the engine's loop (the fp32 oracle)."""
        return cls(packed=False, share_prefix=False, preallocate=False, direct_decode=False)

    @classmethod
    def fastest(cls) -> "EngineOptions":
        """Every speed path on, whatever the environment says (what the equivalence tests hold to the plain path)."""
        return cls(packed=True, share_prefix=True, preallocate=True, direct_decode=True)

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)
