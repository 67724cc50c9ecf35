"""Units (layer, kind, index) and circuits: a set of attention heads and MLP neurons, saved as JSON.

A head is one query head at the input of o_proj (GQA-safe); a neuron is one input channel of
down_proj. A circuit records the model it was found on so it cannot be applied to another one.
SafeSeek-compatible circuits (`circuits.safeseek`) add kinds of their own (output channels of each
projection, post-o_proj head blocks); their widths travel in the signature, so counts, fractions,
random controls and Jaccard work for every kind alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import torch

from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import write_json

Kind = Literal["head", "neuron"]
KINDS: tuple[str, ...] = ("head", "neuron")


@dataclass(frozen=True, order=True)
class Unit:
    """One maskable unit: a query head or an MLP neuron of one layer."""

    layer: int
    kind: str
    index: int


def model_signature(model: Model) -> dict:
    """What a circuit must match to be applied: the model name and its unit counts."""
    a = model.arch
    return {"model": model.name, "n_layers": a.n_layers, "n_heads": a.n_heads, "d_mlp": a.d_mlp}


@dataclass
class Circuit:
    """A set of units per kind (layer -> sorted indices) plus how it was found."""

    signature: dict
    units: dict[str, dict[int, list[int]]]  # kind -> layer -> indices
    parameterisation: str = "hard_concrete"
    ablation: str = "mean"
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_units(cls, model: Model, units: Iterable[Unit], **kwargs) -> "Circuit":
        """Build a circuit from units, checking each against the model."""
        table: dict[str, dict[int, list[int]]] = {k: {} for k in KINDS}
        for u in units:
            check_unit(model, u)
            table[u.kind].setdefault(u.layer, []).append(u.index)
        for kind in table:
            table[kind] = {layer: sorted(set(ix)) for layer, ix in sorted(table[kind].items())}
        return cls(model_signature(model), table, **kwargs)

    def unit_list(self) -> list[Unit]:
        return sorted(
            Unit(layer, kind, i) for kind, layers in self.units.items() for layer, ix in layers.items() for i in ix
        )

    def count(self, kind: str) -> int:
        return sum(len(ix) for ix in self.units.get(kind, {}).values())

    def kinds(self) -> tuple[str, ...]:
        """The unit kinds this circuit is counted over: head and neuron, or the SafeSeek kinds it was found with."""
        return tuple(self.signature.get("widths") or KINDS)

    def widths(self) -> dict[str, int]:
        """Units per layer of each kind."""
        s = self.signature
        return dict(s.get("widths") or {"head": s["n_heads"], "neuron": s["d_mlp"]})

    def totals(self) -> dict[str, int]:
        """Units of each kind in the whole model."""
        return {k: self.signature["n_layers"] * w for k, w in self.widths().items()}

    def fraction(self, kind: str | None = None) -> float:
        """Fraction of units in the circuit (of one kind, or of all units of its kinds)."""
        totals = self.totals()
        if kind is not None:
            return self.count(kind) / totals[kind] if kind in totals else 0.0
        return sum(self.count(k) for k in totals) / sum(totals.values())

    def layer_profile(self, kind: str) -> dict[int, int]:
        return {layer: len(ix) for layer, ix in self.units.get(kind, {}).items()}

    def dense(self, kind: str) -> torch.Tensor:
        """[n_layers, n_units] 0/1 membership."""
        out = torch.zeros(self.signature["n_layers"], self.widths()[kind])
        for layer, ix in self.units.get(kind, {}).items():
            out[layer, ix] = 1.0
        return out

    def check_model(self, model: Model) -> None:
        """Refuse a circuit found on another model (one sentence)."""
        mine = model_signature(model)
        shape = {k: v for k, v in self.signature.items() if k in mine and k != "model"}
        if shape != {k: v for k, v in mine.items() if k != "model"}:
            raise SteerlabError(
                f"This circuit was found on '{self.signature.get('model')}' {shape}, which does not match "
                f"'{model.name}' { ({k: v for k, v in mine.items() if k != 'model'}) }; find a circuit for this model."
            )

    def to_dict(self) -> dict:
        return {
            "signature": self.signature,
            "units": {k: {str(l): ix for l, ix in v.items()} for k, v in self.units.items()},
            "counts": {k: self.count(k) for k in self.kinds()},
            "fraction": {k: self.fraction(k) for k in self.kinds()} | {"all": self.fraction()},
            "parameterisation": self.parameterisation,
            "ablation": self.ablation,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Circuit":
        try:
            units = {k: {int(l): [int(i) for i in ix] for l, ix in v.items()} for k, v in data["units"].items()}
            return cls(
                dict(data["signature"]),
                units,
                data.get("parameterisation", "?"),
                data.get("ablation", "?"),
                dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SteerlabError(f"This is not a steerlab circuit file (missing or malformed field: {exc}).") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, self.to_dict(), indent=1)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Circuit":
        path = Path(path)
        if not path.is_file():
            raise SteerlabError(f"Circuit file '{path}' does not exist; create one with `steerlab circuits find`.")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise SteerlabError(f"Circuit file '{path}' is not valid JSON.") from None
        return cls.from_dict(data)


def check_unit(model: Model, unit: Unit) -> None:
    """One sentence when a unit does not exist in this model."""
    model.arch.check_layer(unit.layer)
    n = model.arch.n_units(unit.kind)
    if not 0 <= unit.index < n:
        raise SteerlabError(
            f"{unit.kind} {unit.index} is out of range: layer {unit.layer} has {unit.kind}s 0 to {n - 1}."
        )


def random_circuit(circuit: Circuit, seed: int = 0) -> Circuit:
    """A control: the same number of units per layer and kind, indices drawn at random."""
    gen = torch.Generator().manual_seed(seed)
    s = circuit.signature
    units: dict[str, dict[int, list[int]]] = {}
    for kind, width in circuit.widths().items():
        units[kind] = {
            layer: sorted(torch.randperm(width, generator=gen)[: len(ix)].tolist())
            for layer, ix in circuit.units.get(kind, {}).items()
        }
    return Circuit(dict(s), units, circuit.parameterisation, circuit.ablation, {"control": "random", "seed": seed})


def jaccard(a: Circuit, b: Circuit) -> float:
    """Overlap of two circuits' unit sets (1 = identical)."""
    sa, sb = set(a.unit_list()), set(b.unit_list())
    return len(sa & sb) / max(1, len(sa | sb))
