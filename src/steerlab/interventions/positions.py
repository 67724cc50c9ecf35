"""Which token positions an intervention touches, from absolute positions; padding is never selected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import torch

from steerlab.errors import SteerlabError


@dataclass(frozen=True)
class Span:
    """Positions [start, stop) counted from the row's first real token, or from its prompt end (anchor='prompt_end').

    Span(-1, 0, anchor="prompt_end") is the last prompt token; Span(0, 8) the first eight tokens.
    """

    start: int | None = None
    stop: int | None = None
    anchor: Literal["absolute", "prompt_end"] = "absolute"

    def to_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop, "anchor": self.anchor}


Positions = Union[Literal["all", "prompt", "generated"], Span]
NAMED_POSITIONS = ("all", "prompt", "generated")


def check_positions(positions: object) -> Positions:
    """Accept a position spec (name, Span, or its dict form) or raise one sentence."""
    if isinstance(positions, Span):
        return positions
    if isinstance(positions, dict):
        return Span(**positions)
    if positions in NAMED_POSITIONS:
        return positions  # type: ignore[return-value]
    raise SteerlabError(f"Unknown positions '{positions}'; use all, prompt, generated or a Span(start, stop).")


def positions_to_json(positions: Positions) -> object:
    return positions.to_dict() if isinstance(positions, Span) else positions


def position_mask(positions: Positions, token_positions: torch.Tensor, prompt_lengths: torch.Tensor) -> torch.Tensor:
    """Boolean [B, T] mask of the selected tokens; token_positions is -1 at padding."""
    real = token_positions >= 0
    if positions == "all":
        return real
    plen = prompt_lengths[:, None]
    if positions == "prompt":
        return real & (token_positions < plen)
    if positions == "generated":
        return token_positions >= plen
    rel = token_positions - plen if positions.anchor == "prompt_end" else token_positions
    mask = real
    if positions.start is not None:
        mask = mask & (rel >= positions.start)
    if positions.stop is not None:
        mask = mask & (rel < positions.stop)
    return mask
