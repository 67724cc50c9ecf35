"""Turn a list of interventions into forward hooks inside a context manager that always removes them.

Edits at one site run in a fixed order: masks, latent clamps, added vectors, then recording, so a
record sees what the next module sees. Added vectors with the same positions are fused into one
[B, d] delta per site; clamps on one SAE share one partial encode.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.interventions.positions import Positions, Span, position_mask
from steerlab.interventions.specs import (
    AddVector,
    ClampLatents,
    Intervention,
    MaskUnits,
    Record,
    SteerLatent,
    clamp_table,
)
from steerlab.models.loading import Model
from steerlab.sae.core import Sae


def _pos_key(positions: Positions) -> object:
    return (positions.start, positions.stop, positions.anchor) if isinstance(positions, Span) else positions


class StepContext:
    """Where each token of the current forward sits: absolute position per row (-1 = padding), prompt lengths."""

    def __init__(self) -> None:
        self.token_positions: torch.Tensor | None = None
        self.prompt_lengths: torch.Tensor | None = None
        self._masks: dict[object, torch.Tensor] = {}

    def set(self, token_positions: torch.Tensor, prompt_lengths: torch.Tensor) -> None:
        self.token_positions = token_positions
        self.prompt_lengths = prompt_lengths
        self._masks.clear()

    def mask(self, positions: Positions, hidden: torch.Tensor) -> torch.Tensor:
        """[B, T] bool mask for a position spec (memoised per forward)."""
        if self.token_positions is None or self.token_positions.shape != hidden.shape[:2]:
            # A plain forward outside the engine: every token is a real prompt token.
            b, t = hidden.shape[:2]
            self.set(torch.arange(t, device=hidden.device).expand(b, t), torch.full((b,), t, device=hidden.device))
        key = _pos_key(positions)
        if key not in self._masks:
            self._masks[key] = position_mask(positions, self.token_positions, self.prompt_lengths)
        return self._masks[key]


@dataclass
class _ClampOp:
    sae: Sae
    positions: Positions
    latents: torch.Tensor  # [U]
    active: torch.Tensor  # [B or 1, U] bool
    value: torch.Tensor  # [B or 1, U]


@dataclass
class _SiteOps:
    masks: list[tuple[Positions, torch.Tensor, torch.Tensor | None]] = field(default_factory=list)
    clamps: list[_ClampOp] = field(default_factory=list)
    adds: dict[object, tuple[Positions, torch.Tensor]] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)


class Session:
    """Installed interventions: the step context the engine updates, and the recorded activations."""

    def __init__(self, model: Model, interventions: Sequence[Intervention]):
        self.model = model
        self.ctx = StepContext()
        self.batch_size = _common_batch_size(interventions)
        self.sites: dict[tuple[int, str], _SiteOps] = defaultdict(_SiteOps)
        self._recorded: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]]] = (
            defaultdict(list)
        )
        self._row_ids: torch.Tensor | None = None  # original row of each current row, once rows were dropped
        self._record_names: list[str] = []
        self._pending_clamps: dict[tuple[int, object], list[ClampLatents]] = defaultdict(list)
        for iv in interventions:
            self._add(iv)
        for group in self._pending_clamps.values():
            self._add_clamp_group(group)
        self._handles: list = []

    # -- compilation -------------------------------------------------------------------------
    def _add(self, iv: Intervention) -> None:
        arch = self.model.arch
        device, dtype = self.model.device, self.model.dtype
        if isinstance(iv, SteerLatent):
            iv = iv.as_add_vector()
        if isinstance(iv, AddVector):
            arch.check_layer(iv.layer)
            width = arch.site_width(iv.site)
            if iv.vector.shape[-1] != width:
                raise SteerlabError(
                    f"The vector has width {iv.vector.shape[-1]} but layer {iv.layer}'s {iv.site} has width {width}."
                )
            ops = self.sites[(iv.layer, iv.site)]
            key = _pos_key(iv.positions)
            delta = iv.delta().to(device=device, dtype=dtype)
            if key in ops.adds:
                delta = ops.adds[key][1] + delta
            ops.adds[key] = (iv.positions, delta)
        elif isinstance(iv, ClampLatents):
            _check_sae_fits(iv.sae, arch, iv.sae.layer, iv.sae.site)
            self._pending_clamps[(id(iv.sae), _pos_key(iv.positions))].append(iv)
        elif isinstance(iv, MaskUnits):
            arch.check_layer(iv.layer)
            n = arch.n_units(iv.kind)
            if iv.mask.shape[-1] != n:
                raise SteerlabError(
                    f"The {iv.kind} mask has {iv.mask.shape[-1]} entries but layer {iv.layer} has {n} {iv.kind}s."
                )
            mask = iv.mask.to(device=device)
            fill = None if iv.fill is None else iv.fill.to(device=device)
            self.sites[(iv.layer, iv.kind)].masks.append((iv.positions, mask, fill))
        elif isinstance(iv, Record):
            arch.check_layer(iv.layer)
            arch.site_width(iv.site)
            if iv.sae is not None:
                _check_sae_fits(iv.sae, arch, iv.layer, iv.site)
            if iv.name in self._record_names:
                return
            self._record_names.append(iv.name)
            self.sites[(iv.layer, iv.site)].records.append(iv)
        else:
            raise SteerlabError(f"Unknown intervention {type(iv).__name__}.")

    def _add_clamp_group(self, group: list[ClampLatents]) -> None:
        """One op per (SAE, positions): the union of latents, a per-row active mask and target values."""
        sae, positions = group[0].sae, group[0].positions
        table = clamp_table(group, max((iv.batch_size or 1) for iv in group))
        if table is None:
            return
        latents, active, value = table
        device = self.model.device
        op = _ClampOp(sae, positions, torch.tensor(latents, device=device), active.to(device), value.to(device))
        self.sites[(sae.layer, sae.site)].clamps.append(op)

    # -- hooks ---------------------------------------------------------------------------------
    def _edit(self, key: tuple[int, str], hidden: torch.Tensor) -> torch.Tensor:
        ops = self.sites[key]
        ctx = self.ctx
        for positions, mask, fill in ops.masks:
            hidden = _apply_mask(hidden, mask, fill, ctx.mask(positions, hidden), key[1], self.model.arch)
        for op in ops.clamps:
            hidden = _apply_clamp(hidden, op, ctx.mask(op.positions, hidden))
        for positions, delta in ops.adds.values():
            where = ctx.mask(positions, hidden)
            hidden = hidden + where.unsqueeze(-1).to(hidden.dtype) * delta.unsqueeze(1)
        for rec in ops.records:
            self._record(rec, hidden, ctx.mask(rec.positions, hidden))
        return hidden

    def _record(self, rec: Record, hidden: torch.Tensor, where: torch.Tensor) -> None:
        with torch.no_grad():
            value = hidden.detach()
            if rec.sae is not None:
                value = rec.sae.encode_latents(value, rec.latents) if rec.latents is not None else rec.sae.encode(value)
            else:
                value = value.float()
            self._recorded[rec.name].append((value, where, self.ctx.token_positions, self._row_ids))

    def install(self) -> None:
        for key in self.sites:
            layer, site = key
            self._handles.append(self.model.arch.hook_site(layer, site, lambda h, key=key: self._edit(key, h)))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Run the plain model inside the block (hooks removed), then reinstall them."""
        self.remove()
        try:
            yield
        finally:
            self.install()

    def rows_alike(self) -> bool:
        """Every row gets the same edit at the same absolute position: no per-row field, no prompt-end span."""
        return self.batch_size is None and self._positions_row_independent()

    def _positions_row_independent(self) -> bool:
        """Every edit's positions are absolute (none is anchored at a row's own prompt end)."""
        positions = [
            p
            for ops in self.sites.values()
            for p in [
                *(m[0] for m in ops.masks),
                *(op.positions for op in ops.clamps),
                *(q for q, _ in ops.adds.values()),
            ]
        ]
        return not any(isinstance(p, Span) and p.anchor == "prompt_end" for p in positions)

    def row_groups(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Rows whose edits are identical, by value: (one row of each group [G], each row's group [B]).

        None when the edits have no per-row field (every row alike) or may depend on a row's prompt length.
        Rows compare by every per-row tensor `select_rows` keeps (added deltas, clamp targets, unit masks), exactly.
        """
        rows = self.batch_size
        if rows is None or not self._positions_row_independent():
            return None
        parts = [
            t
            for ops in self.sites.values()
            for t in [*(m for _, m, _ in ops.masks), *(x for op in ops.clamps for x in (op.active, op.value))]
            + [delta for _, delta in ops.adds.values()]
            if _per_row(t, rows)
        ]
        if not parts:
            return None
        key = torch.cat([t.reshape(rows, -1).double() for t in parts], dim=1)
        unique, group = torch.unique(key, dim=0, return_inverse=True)
        first = torch.full((unique.shape[0],), rows, dtype=torch.long, device=group.device)
        first.scatter_reduce_(0, group, torch.arange(rows, device=group.device), reduce="amin")
        return first, group

    @contextlib.contextmanager
    def only_rows(self, keep: torch.Tensor) -> Iterator[None]:
        """Within the block, the per-row edits hold only these rows (in this order); restored after."""
        saved = {
            key: (ops.masks, [(op, op.active, op.value) for op in ops.clamps], ops.adds)
            for key, ops in self.sites.items()
        }
        row_ids = self._row_ids
        self.select_rows(keep)
        try:
            yield
        finally:
            for key, (masks, clamps, adds) in saved.items():
                self.sites[key].masks, self.sites[key].adds = masks, adds
                for op, active, value in clamps:
                    op.active, op.value = active, value
            self._row_ids = row_ids

    def first_hooked_layer(self) -> int | None:
        """The first decoder layer holding a hook (n_layers: none); the layers below it run as the plain model.
        None when something records activations (a record needs every row's own forward)."""
        if any(ops.records for ops in self.sites.values()):
            return None
        return min((layer for layer, _ in self.sites), default=self.model.arch.n_layers)

    # -- results ---------------------------------------------------------------------------------
    def set_step(self, token_positions: torch.Tensor, prompt_lengths: torch.Tensor) -> None:
        """Tell the hooks the absolute position of every token in the next forward (-1 = padding)."""
        self.ctx.set(token_positions, prompt_lengths)

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep only these rows of every per-row tensor (the engine drops finished rows mid-batch)."""
        rows = len(self._row_ids) if self._row_ids is not None else self.ctx.token_positions.shape[0]
        pick = lambda t: t[keep] if _per_row(t, rows) else t  # noqa: E731
        for ops in self.sites.values():
            ops.masks = [(p, pick(m), f) for p, m, f in ops.masks]
            for op in ops.clamps:
                op.active, op.value = pick(op.active), pick(op.value)
            ops.adds = {k: (p, pick(delta)) for k, (p, delta) in ops.adds.items()}
        current = self._row_ids if self._row_ids is not None else torch.arange(rows, device=keep.device)
        self._row_ids = current[keep]

    def records(self, position_limits: Sequence[int] | None = None) -> dict[str, list[torch.Tensor]]:
        """Recorded activations: name -> one [n_tokens, width] tensor per original row, in token order.

        position_limits[r], when given, drops row r's tokens at absolute positions >= the limit
        (tokens a finished row kept computing in lockstep with the batch).
        """
        out: dict[str, list[torch.Tensor]] = {}
        for name, chunks in self._recorded.items():
            batch = chunks[0][0].shape[0]
            per_row: list[list[torch.Tensor]] = [[] for _ in range(batch)]
            for value, where, positions, row_ids in chunks:
                ids = list(range(value.shape[0])) if row_ids is None else row_ids.tolist()
                if position_limits is not None:
                    limits = torch.as_tensor([position_limits[i] for i in ids], device=positions.device).unsqueeze(1)
                    where = where & (positions < limits)
                for j, r in enumerate(ids):
                    per_row[r].append(value[j][where[j]])
            out[name] = [torch.cat(parts).cpu() for parts in per_row]
        return out

    def clear_records(self) -> None:
        self._recorded.clear()


def _per_row(t: torch.Tensor, rows: int) -> bool:
    """A tensor with one entry per batch row ([B, ...]); a [d] vector or a [1, ...] one is shared by every row."""
    return t.ndim >= 2 and t.shape[0] == rows and rows > 1


def _check_sae_fits(sae: Sae, arch, layer: int, site: str) -> None:
    arch.check_layer(layer)
    width = arch.site_width(site)
    if sae.cfg.d_in != width:
        raise SteerlabError(f"The SAE reads width {sae.cfg.d_in} but layer {layer}'s {site} has width {width}.")


def _common_batch_size(interventions: Sequence[Intervention]) -> int | None:
    sizes = {iv.batch_size for iv in interventions} - {None}
    if len(sizes) > 1:
        raise SteerlabError(f"Per-row interventions disagree on the batch size: {sorted(sizes)}.")
    return sizes.pop() if sizes else None


def _apply_mask(hidden, mask, fill, where, kind, arch) -> torch.Tensor:
    mask = mask if mask.ndim == 2 else mask.unsqueeze(0)  # [B or 1, n]
    mask = torch.where(
        where.unsqueeze(-1),
        mask.unsqueeze(1).to(hidden.dtype),
        torch.ones((), dtype=hidden.dtype, device=hidden.device),
    )
    if kind == "head":
        b, t, _ = hidden.shape
        heads = hidden.view(b, t, arch.n_heads, arch.head_dim)
        gate = mask.unsqueeze(-1)  # [B, T, H, 1]
        out = (
            heads * gate
            if fill is None
            else heads * gate + (1 - gate) * fill.reshape(arch.n_heads, -1).to(hidden.dtype)
        )
        return out.reshape(b, t, -1)
    return hidden * mask if fill is None else hidden * mask + (1 - mask) * fill.to(hidden.dtype)


def _apply_clamp(hidden: torch.Tensor, op: _ClampOp, where: torch.Tensor) -> torch.Tensor:
    z = op.sae.encode_latents(hidden, op.latents)  # [B, T, U] fp32
    target = torch.where(op.active.unsqueeze(1), op.value.unsqueeze(1), z)
    delta = op.sae.decode_delta(target - z, op.latents)  # only the edited latents move: the SAE error term is kept
    return hidden + (where.unsqueeze(-1) * delta).to(hidden.dtype)


@contextlib.contextmanager
def apply(model: Model, interventions: Sequence[Intervention] = ()) -> Iterator[Session]:
    """Install interventions as hooks for the duration of a `with` block; always removes them."""
    session = Session(model, list(interventions))
    session.install()
    try:
        yield session
    finally:
        session.remove()


def batch_per_row(per_row: Sequence[Sequence[Intervention]]) -> list[Intervention]:
    """Turn one intervention list per row into batched interventions for one forward over all rows."""
    batch = len(per_row)
    merged: list[Intervention] = []
    records: dict[str, Intervention] = {}
    for row, ivs in enumerate(per_row):
        for iv in ivs:
            if isinstance(iv, Record):
                records.setdefault(iv.name, iv)
                continue
            if iv.batch_size not in (None, batch):
                raise SteerlabError(
                    "An intervention in a per-row list has its own batch dimension; give it one row's values."
                )
            merged.append(iv.expand_to_row(row, batch))
    return merged + list(records.values())
