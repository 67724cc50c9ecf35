"""Turn gates or circuits into MaskUnits interventions, with zero or mean ablation.

Mean ablation replaces an ablated unit by its average activation over benign reference prompts
(every real token but the first, whose activations are outliers), computed once in one pass.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch

from steerlab.circuits.units import KINDS, Circuit
from steerlab.engine.scoring import trace
from steerlab.errors import SteerlabError
from steerlab.interventions.specs import MaskUnits, Record
from steerlab.models.loading import Model

Ablation = Literal["zero", "mean"]
Means = dict[tuple[int, str], torch.Tensor]


@torch.no_grad()
def unit_means(model: Model, prompts: Sequence[str], batch_size: int = 8) -> Means:
    """Per-layer mean of each head's output ([n_heads, head_dim]) and each neuron's activation ([d_mlp])."""
    records = [
        Record(layer, site=kind, positions="all", name=f"{kind}.{layer}")
        for layer in range(model.arch.n_layers)
        for kind in KINDS
    ]
    rows = trace(model, list(prompts), records, chat=None, batch_size=batch_size)
    means: Means = {}
    for layer in range(model.arch.n_layers):
        for kind in KINDS:
            acts = torch.cat([r[f"{kind}.{layer}"][1:] for r in rows])
            mean = acts.float().mean(0)
            means[(layer, kind)] = mean.reshape(model.arch.n_heads, model.arch.head_dim) if kind == "head" else mean
    return means


def check_ablation(ablation: str, means: Means | None) -> None:
    if ablation not in ("zero", "mean"):
        raise SteerlabError(f"Unknown ablation '{ablation}'; choose zero or mean.")
    if ablation == "mean" and not means:
        raise SteerlabError("Mean ablation needs unit means; compute them with unit_means(model, prompts).")


def gate_interventions(
    model: Model,
    gates: dict[str, torch.Tensor],
    ablation: Ablation = "zero",
    means: Means | None = None,
    skip_ones: bool = False,
) -> list[MaskUnits]:
    """MaskUnits per layer and kind from masks [n_layers, n] or per-row [n_layers, B, n] (1 = keep the unit)."""
    check_ablation(ablation, means)
    out = []
    for kind, mask in gates.items():
        for layer in range(mask.shape[0]):
            if skip_ones and not mask.requires_grad and bool((mask[layer] == 1).all()):
                continue
            fill = means[(layer, kind)] if ablation == "mean" else None
            out.append(MaskUnits(layer=layer, kind=kind, mask=mask[layer], fill=fill))
    return out


def circuit_interventions(
    model: Model,
    circuit: Circuit,
    view: Literal["removed", "circuit"] = "removed",
    ablation: Ablation = "zero",
    means: Means | None = None,
) -> list[MaskUnits]:
    """Interventions that remove the circuit ('removed') or keep only it ('circuit')."""
    circuit.check_model(model)
    if view not in ("removed", "circuit"):
        raise SteerlabError(f"Unknown view '{view}'; choose removed or circuit.")
    gates = {}
    for kind in KINDS:
        member = circuit.dense(kind)
        gates[kind] = 1.0 - member if view == "removed" else member
    return gate_interventions(model, gates, ablation, means, skip_ones=True)
