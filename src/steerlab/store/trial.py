"""A trial's identity: (condition, latent, strength, prompt, seed). Its key is a hash of exactly that."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Trial:
    """One generation to run. `label` (the steering label) and `extra` ride along but are not identity."""

    condition: str
    prompt: str
    seed: int = 0
    latent: int | None = None
    strength: float | None = None
    label: str = field(default="", compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", int(self.seed))
        if self.latent is not None:
            object.__setattr__(self, "latent", int(self.latent))
        if self.strength is not None:
            object.__setattr__(self, "strength", float(self.strength))

    @property
    def key(self) -> str:
        """Stable across processes and runs: a hash of the identity fields only."""
        ident = [self.condition, self.latent, self.strength, self.prompt, self.seed]
        return hashlib.sha256(json.dumps(ident, ensure_ascii=False).encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_key": self.key,
            "condition": self.condition,
            "latent": self.latent,
            "strength": self.strength,
            "prompt": self.prompt,
            "seed": self.seed,
            "label": self.label,
            "extra": self.extra,
        }
