"""The intervention vocabulary: small frozen dataclasses that serialise to JSON.

Any numeric field may carry a leading batch dimension so each row of one batch gets its own vector,
latent, strength or mask. `expand_to_row(r, B)` turns a shared intervention into a batched one that
acts on row r only; `rows(idx)` selects rows of a batched one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.interventions.positions import Positions, check_positions, positions_to_json
from steerlab.sae.core import Sae


def _tensor(value: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value if value.dtype == dtype or value.requires_grad else value.to(dtype)
    return torch.as_tensor(value, dtype=dtype)


def _finite(value: torch.Tensor, what: str) -> None:
    """One sentence for NaN or infinite steering numbers (they would silently turn every answer into garbage)."""
    if value.is_floating_point() and not bool(torch.isfinite(value.detach()).all()):
        raise SteerlabError(f"{what} must hold only finite numbers (no NaN or infinity).")


def _rows_of(value: torch.Tensor, batched_ndim: int, idx: torch.Tensor) -> torch.Tensor:
    return value[idx] if value.ndim == batched_ndim else value


def _json_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Sae):
        return {"sae": value.source}
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


@dataclass(frozen=True, eq=False)
class Intervention:
    """Base class: JSON form, a stable fingerprint, and the batch size of any per-row field."""

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = positions_to_json(value) if f.name == "positions" else _json_value(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def fingerprint(self) -> str:
        """A short hash of the full spec; tensors are hashed by their bytes, not stringified."""
        digest = hashlib.sha256(type(self).__name__.encode())
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            digest.update(f.name.encode())
            if isinstance(value, torch.Tensor):
                digest.update(str((value.dtype, tuple(value.shape))).encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
            elif isinstance(value, Sae):  # what the SAE is (its weights), not only where it came from
                digest.update(f"{value.source}:{value.content_digest()}".encode())
            else:
                digest.update(
                    json.dumps(positions_to_json(value) if f.name == "positions" else value, default=str).encode()
                )
        return digest.hexdigest()[:16]

    @property
    def batch_size(self) -> int | None:
        return None

    def rows(self, idx: Sequence[int] | torch.Tensor) -> "Intervention":
        return self

    def expand_to_row(self, row: int, batch: int) -> "Intervention":
        return self


@dataclass(frozen=True, eq=False)
class AddVector(Intervention):
    """Add strength × vector to a site's activation (a concept vector, or any direction).

    Args:
        layer: the decoder layer (0-based) whose site is steered.
        vector: the direction, [d] shared by all rows or [B, d] one per row.
        strength: the multiplier, a scalar or [B] one per row; 0 equals no steering.
        site: where on the layer: resid_pre, resid_post, attn_out or mlp_out.
        positions: which tokens: "all", "prompt", "generated" or a Span; padding is never steered.
        label: a name for reports and the store key (e.g. the concept's name).
    """

    layer: int
    vector: torch.Tensor  # [d] or [B, d]
    strength: torch.Tensor | float = 1.0  # scalar or [B]
    site: str = "resid_post"
    positions: Positions = "all"
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "vector", _tensor(self.vector))
        object.__setattr__(self, "strength", _tensor(self.strength))
        object.__setattr__(self, "positions", check_positions(self.positions))
        _finite(self.vector, "An AddVector's vector")
        _finite(self.strength, "A steering strength")
        if self.vector.ndim not in (1, 2) or self.strength.ndim > 1:
            raise SteerlabError("AddVector takes a vector [d] or [batch, d] and a strength scalar or [batch].")

    @property
    def batch_size(self) -> int | None:
        sizes = {t.shape[0] for t, n in ((self.vector, 2), (self.strength, 1)) if t.ndim == n}
        if len(sizes) > 1:
            raise SteerlabError(f"AddVector's per-row vector and strength disagree on batch size: {sorted(sizes)}.")
        return sizes.pop() if sizes else None

    def delta(self) -> torch.Tensor:
        """strength × vector as [B or 1, d]."""
        vector = self.vector if self.vector.ndim == 2 else self.vector[None]
        strength = self.strength.reshape(-1, 1) if self.strength.ndim == 1 else self.strength.reshape(1, 1)
        return strength * vector

    def rows(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        return dataclasses.replace(self, vector=_rows_of(self.vector, 2, idx), strength=_rows_of(self.strength, 1, idx))

    def expand_to_row(self, row, batch):
        strength = torch.zeros(batch)
        strength[row] = self.strength if self.strength.ndim == 0 else self.strength[row]
        return dataclasses.replace(self, strength=strength)


@dataclass(frozen=True, eq=False)
class SteerLatent(Intervention):
    """Add strength × an SAE latent's decoder direction; latent and strength may differ per row.

    layer/site default to the SAE's own; set them to steer at another layer than the SAE reads.

    Args:
        sae: the SAE whose decoder row gives the direction.
        latent: the latent id, an int shared by all rows or [B] one per row.
        strength: the multiplier, a scalar or [B]; 0 equals no steering.
        layer: the decoder layer to steer (default the SAE's).
        site: the site to steer (default the SAE's).
        positions: which tokens: "all", "prompt", "generated" or a Span.
    """

    sae: Sae
    latent: torch.Tensor | int  # scalar or [B]
    strength: torch.Tensor | float = 1.0  # scalar or [B]
    layer: int | None = None
    site: str | None = None
    positions: Positions = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent", _tensor(self.latent, torch.long))
        object.__setattr__(self, "strength", _tensor(self.strength))
        object.__setattr__(self, "positions", check_positions(self.positions))
        _finite(self.strength, "A steering strength")
        for latent in self.latent.reshape(-1).tolist():
            self.sae.check_latent(latent)

    @property
    def batch_size(self) -> int | None:
        sizes = {t.shape[0] for t in (self.latent, self.strength) if t.ndim == 1}
        if len(sizes) > 1:
            raise SteerlabError(f"SteerLatent's per-row latent and strength disagree on batch size: {sorted(sizes)}.")
        return sizes.pop() if sizes else None

    def as_add_vector(self) -> AddVector:
        """The equivalent AddVector (decoder rows in model space, undoing the SAE input scale)."""
        flat = self.latent.reshape(-1)
        directions = self.sae.decode_delta(torch.eye(len(flat)), flat).detach()  # one decoder row per latent
        directions = directions.reshape(*self.latent.shape, -1)
        return AddVector(
            layer=self.sae.layer if self.layer is None else self.layer,
            vector=directions,
            strength=self.strength,
            site=self.sae.site if self.site is None else self.site,
            positions=self.positions,
            label=f"latent:{self.latent.tolist()}",
        )

    def rows(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        return dataclasses.replace(self, latent=_rows_of(self.latent, 1, idx), strength=_rows_of(self.strength, 1, idx))

    def expand_to_row(self, row, batch):
        latent = self.latent.expand(batch).clone() if self.latent.ndim == 0 else self.latent
        strength = torch.zeros(batch)
        strength[row] = self.strength if self.strength.ndim == 0 else self.strength[row]
        return dataclasses.replace(self, latent=latent, strength=strength)


def _latent_sets(latents: Any) -> tuple:
    """Normalise latents to a tuple of ints (shared) or a tuple of tuples (per row)."""
    if isinstance(latents, torch.Tensor):
        latents = latents.tolist()
    if isinstance(latents, int):
        return (latents,)
    items = list(latents)
    if items and all(isinstance(x, (list, tuple, torch.Tensor)) for x in items):
        return tuple(tuple(int(v) for v in (x.tolist() if isinstance(x, torch.Tensor) else x)) for x in items)
    return tuple(int(x) for x in items)


@dataclass(frozen=True, eq=False)
class ClampLatents(Intervention):
    """Set SAE latents to a value (0 = zero-ablation) at the SAE's site, keeping the SAE error term.

    Only the named latents' encoder rows are computed (ReLU/JumpReLU), so the cost is O(k·d) per token.
    `latents` is a list of ids shared by all rows, or one list per row.

    Args:
        sae: the SAE that reads and writes the site (its layer and site are where the clamp acts).
        latents: latent ids shared by all rows, or one sequence of ids per row.
        value: the value the latents are set to, a scalar or [B]; 0 ablates them.
        positions: which tokens: "all", "prompt", "generated" or a Span.
    """

    sae: Sae
    latents: tuple = ()
    value: torch.Tensor | float = 0.0  # scalar or [B]
    positions: Positions = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", _latent_sets(self.latents))
        object.__setattr__(self, "value", _tensor(self.value))
        object.__setattr__(self, "positions", check_positions(self.positions))
        _finite(self.value, "A clamp value")
        for latent in self.flat_latents():
            self.sae.check_latent(latent)

    @property
    def per_row(self) -> bool:
        return bool(self.latents) and isinstance(self.latents[0], tuple)

    def flat_latents(self) -> list[int]:
        if self.per_row:
            return sorted({x for row in self.latents for x in row})
        return list(self.latents)

    @property
    def batch_size(self) -> int | None:
        sizes = set()
        if self.per_row:
            sizes.add(len(self.latents))
        if self.value.ndim == 1:
            sizes.add(self.value.shape[0])
        if len(sizes) > 1:
            raise SteerlabError(f"ClampLatents' per-row latents and values disagree on batch size: {sorted(sizes)}.")
        return sizes.pop() if sizes else None

    def rows(self, idx):
        idx = torch.as_tensor(idx, dtype=torch.long)
        latents = tuple(self.latents[i] for i in idx.tolist()) if self.per_row else self.latents
        return dataclasses.replace(self, latents=latents, value=_rows_of(self.value, 1, idx))

    def expand_to_row(self, row, batch):
        mine = self.latents[row] if self.per_row else self.latents
        latents = tuple(mine if r == row else () for r in range(batch))
        value = self.value if self.value.ndim == 0 else self.value
        return dataclasses.replace(self, latents=latents, value=value)


def AblateLatents(sae: Sae, latents: Any, positions: Positions = "all") -> ClampLatents:
    """Zero-ablate SAE latents (ClampLatents with value 0).

    Args:
        sae: the SAE whose latents are ablated.
        latents: latent ids shared by all rows, or one sequence of ids per row.
        positions: which tokens: "all", "prompt", "generated" or a Span.

    Returns:
        The ClampLatents intervention.
    """
    return ClampLatents(sae=sae, latents=latents, value=0.0, positions=positions)


@dataclass(frozen=True, eq=False)
class MaskUnits(Intervention):
    """Multiply attention heads (input of o_proj) or MLP neurons (input of down_proj) by a mask.

    The mask may be differentiable (a tensor that requires grad). With `fill`, masked-out units are
    replaced by fill (e.g. their mean activation, [n] or [n, head_dim]) instead of zero.

    Args:
        layer: the decoder layer whose heads or neurons are masked.
        kind: "head" (query heads, the input of o_proj) or "neuron" (the input of down_proj).
        mask: one factor per unit, [n_units] shared or [B, n_units] per row; 1 keeps a unit, 0 removes it.
        fill: what a removed unit becomes (default zero), [n_units] or [n_units, head_dim].
        positions: which tokens: "all", "prompt", "generated" or a Span.
    """

    layer: int
    kind: Literal["head", "neuron"]
    mask: torch.Tensor  # [n_units] or [B, n_units]
    fill: torch.Tensor | None = None
    positions: Positions = "all"

    def __post_init__(self) -> None:
        if self.kind not in ("head", "neuron"):
            raise SteerlabError(f"MaskUnits kind must be 'head' or 'neuron', not '{self.kind}'.")
        object.__setattr__(self, "mask", _tensor(self.mask))
        _finite(self.mask, "A unit mask")
        if self.fill is not None:
            object.__setattr__(self, "fill", _tensor(self.fill))
            _finite(self.fill, "A unit mask's fill")
        object.__setattr__(self, "positions", check_positions(self.positions))

    @property
    def batch_size(self) -> int | None:
        return self.mask.shape[0] if self.mask.ndim == 2 else None

    def rows(self, idx):
        return dataclasses.replace(self, mask=_rows_of(self.mask, 2, torch.as_tensor(idx, dtype=torch.long)))

    def expand_to_row(self, row, batch):
        mask = torch.ones(batch, self.mask.shape[-1], dtype=self.mask.dtype)
        mask[row] = self.mask if self.mask.ndim == 1 else self.mask[row]
        return dataclasses.replace(self, mask=mask)


@dataclass(frozen=True, eq=False)
class Record(Intervention):
    """Record a site's activation per token (raw, or as SAE latents, optionally only some of them).

    Args:
        layer: the decoder layer to read.
        site: the site to read: resid_pre, resid_post, attn_out or mlp_out.
        sae: when given, record its latents instead of the raw activation.
        latents: with an SAE, only these latent ids (only their encoder rows are computed).
        positions: which tokens (default the generated ones); padding is never recorded.
        name: the key of the recording in the results (default "sae.LAYER" or "SITE.LAYER").
    """

    layer: int
    site: str = "resid_post"
    sae: Sae | None = None
    latents: tuple | None = None
    positions: Positions = "generated"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.latents is not None:
            object.__setattr__(self, "latents", _latent_sets(self.latents))
            for latent in self.latents:
                self.sae.check_latent(latent)
        object.__setattr__(self, "positions", check_positions(self.positions))
        if self.name is None:
            prefix = "sae" if self.sae is not None else self.site
            object.__setattr__(self, "name", f"{prefix}.{self.layer}")


INTERVENTION_TYPES: dict[str, type[Intervention]] = {
    cls.__name__: cls for cls in (AddVector, SteerLatent, ClampLatents, MaskUnits, Record)
}


def from_dict(data: dict, resolve_sae: Callable[[str], Sae] | None = None) -> Intervention:
    """Rebuild an intervention from `to_dict()` output; SAEs are looked up by their source string."""
    data = dict(data)
    kind = data.pop("type", None)
    if kind not in INTERVENTION_TYPES:
        raise SteerlabError(f"Unknown intervention type '{kind}'; known: {', '.join(INTERVENTION_TYPES)}.")
    if isinstance(data.get("sae"), dict):
        if resolve_sae is None:
            raise SteerlabError("This intervention names an SAE; pass resolve_sae to load it.")
        data["sae"] = resolve_sae(data["sae"]["sae"])
    return INTERVENTION_TYPES[kind](**data)


def clamp_table(
    group: Sequence[ClampLatents], batch: int, n_rows: int | None = None
) -> tuple[list[int], torch.Tensor, torch.Tensor] | None:
    """Clamps on one SAE as tables, for the hf hooks and the vLLM plan alike: (the union of their latents, sorted;
    active [n_rows, n] bool; target value [n_rows, n] fp32). Rows from `batch` to `n_rows` stay inactive; None
    when the group names no latent."""
    latents = sorted({x for iv in group for x in iv.flat_latents()})
    if not latents:
        return None
    column = {x: i for i, x in enumerate(latents)}
    active = torch.zeros(n_rows or batch, len(latents), dtype=torch.bool)
    value = torch.zeros(n_rows or batch, len(latents))
    for iv in group:
        rows = iv.latents if iv.per_row else (iv.latents,) * batch
        values = iv.value.float().expand(batch) if iv.value.ndim == 0 else iv.value.float()
        for r, row in enumerate(rows):
            for x in row:
                active[r, column[x]] = True
                value[r, column[x]] = values[r]
    return latents, active, value
