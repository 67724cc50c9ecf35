"""Learnable unit masks: hard concrete (L0, default) and sigmoid straight-through (SafeSeek-compatible).

A gate g in [0, 1] per unit says "this unit is in the circuit". The circuit-removed model uses the
mask 1 - g and the circuit-only model uses g, so both views come from one set of fp32 logits.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from steerlab.circuits.units import KINDS, Circuit, Unit
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import atomic_path

Param = Literal["hard_concrete", "sigmoid_ste"]
BETA, LEFT, RIGHT, EPS = 2.0 / 3.0, -0.1, 1.1, 1e-6


def check_fraction(value: float, what: str = "sparsity target") -> float:
    """A fraction strictly between 0 and 1, else one sentence."""
    if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise SteerlabError(f"The {what} must be a fraction strictly between 0 and 1 (e.g. 0.02 for 2%), not {value}.")
    return float(value)


class UnitMasks(nn.Module):
    """fp32 logits per kind, [n_layers, n_units]; `sample()` draws gates, `hard()` extracts a circuit."""

    def __init__(
        self,
        model: Model,
        kinds: tuple[str, ...] = KINDS,
        param: Param = "hard_concrete",
        init_p: float = 0.05,
        temperature: float = 1.0,
    ):
        super().__init__()
        if param not in ("hard_concrete", "sigmoid_ste"):
            raise SteerlabError(f"Unknown mask parameterisation '{param}'; choose hard_concrete or sigmoid_ste.")
        for kind in kinds:
            if kind not in KINDS:
                raise SteerlabError(f"Unknown unit kind '{kind}'; choose from {', '.join(KINDS)}.")
        check_fraction(init_p, "initial circuit probability")
        self.model_name = model.name
        self.n_layers = model.arch.n_layers
        self.kinds = tuple(kinds)
        self.param = param
        self.temperature = temperature
        if param == "hard_concrete":  # choose log_alpha so that the expected L0 equals init_p
            init = math.log(init_p / (1 - init_p)) + BETA * math.log(-LEFT / RIGHT)
        else:
            init = math.log(init_p / (1 - init_p)) * temperature
        self.logits = nn.ParameterDict(
            {
                k: nn.Parameter(torch.full((self.n_layers, model.arch.n_units(k)), init, dtype=torch.float32))
                for k in kinds
            }
        )

    def sample(self) -> dict[str, torch.Tensor]:
        """Training gates (differentiable): stochastic hard concrete, or the STE hard mask."""
        out = {}
        for kind, z in self.logits.items():
            if self.param == "hard_concrete":
                u = torch.rand_like(z).clamp(EPS, 1 - EPS)
                s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + z) / BETA)
                out[kind] = (s * (RIGHT - LEFT) + LEFT).clamp(0.0, 1.0)
            else:
                soft = torch.sigmoid(z / self.temperature)
                out[kind] = (soft > 0.5).float() + soft - soft.detach()
        return out

    def expected_l0(self, layers: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Expected fraction of all units in the circuit, per kind (differentiable); unsearched layers count 0."""
        out = {}
        for k, z in self.logits.items():
            p = (
                torch.sigmoid(z - BETA * math.log(-LEFT / RIGHT))
                if self.param == "hard_concrete"
                else torch.sigmoid(z / self.temperature)
            )
            out[k] = p.mean() if layers is None else p[layers].sum() / p.numel()
        return out

    def scores(self, kind: str) -> torch.Tensor:
        """How strongly each unit belongs to the circuit ([n_layers, n_units], detached)."""
        return self.logits[kind].detach()

    def hard(self, counts: dict[str, int], layers: list[int] | None = None) -> dict[str, torch.Tensor]:
        """Deterministic 0/1 gates: exactly the top-k units by logit for each kind (within `layers`)."""
        out = {}
        for kind, z in self.logits.items():
            if layers is not None:
                allowed = torch.full_like(z, float("-inf"))
                allowed[layers] = 0.0
                z = z + allowed
            k = int(counts.get(kind, 0))
            if not 0 <= k <= int(torch.isfinite(z).sum()):
                raise SteerlabError(f"Cannot keep {k} {kind}s: the model has {z.numel()}.")
            flat = torch.zeros(z.numel())
            if k:
                flat[torch.topk(z.detach().reshape(-1), k).indices] = 1.0
            out[kind] = flat.reshape(z.shape)
        return out

    def extract(self, model: Model, fractions: dict[str, float], layers: list[int] | None = None, **meta) -> Circuit:
        """The circuit of the top round(fraction × n) units per kind (n = all units of the kind)."""
        counts = {k: round(check_fraction(fractions[k]) * self.logits[k].numel()) for k in self.kinds}
        gates = self.hard(counts, layers)
        units = [Unit(int(l), kind, int(i)) for kind, g in gates.items() for l, i in g.nonzero().tolist()]
        return Circuit.from_units(model, units, parameterisation=self.param, meta=meta)


def save_logits(masks: UnitMasks, path) -> None:
    """Write the trained mask logits (safetensors) so circuits of other sizes can be extracted later."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(
            {k: v.detach().contiguous() for k, v in masks.logits.items()},
            str(tmp),
            metadata={"param": masks.param, "model": masks.model_name},
        )


def load_logits(model: Model, path) -> UnitMasks:
    """Rebuild UnitMasks from saved logits (checked against the model's shape)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    masks = UnitMasks(model, tuple(tensors), meta.get("param", "hard_concrete"))
    for k, t in tensors.items():
        if t.shape != masks.logits[k].shape:
            raise SteerlabError(
                f"Saved {k} mask logits have shape {tuple(t.shape)} but this model needs {tuple(masks.logits[k].shape)}; they belong to another model."
            )
        with torch.no_grad():
            masks.logits[k].copy_(t)
    return masks


class Lagrangian(nn.Module):
    """λ1·(E[L0] − t) + λ2·(E[L0] − t)² per kind; λ is trained by gradient ascent (Edge Pruning, CoFi)."""

    def __init__(self, kinds: tuple[str, ...]):
        super().__init__()
        self.lam1 = nn.ParameterDict({k: nn.Parameter(torch.zeros(())) for k in kinds})
        self.lam2 = nn.ParameterDict({k: nn.Parameter(torch.zeros(())) for k in kinds})

    def forward(self, expected: dict[str, torch.Tensor], targets: dict[str, float]) -> torch.Tensor:
        total = torch.zeros(())
        for kind, e in expected.items():
            gap = e - targets[kind]
            total = total + self.lam1[kind] * gap + self.lam2[kind] * gap * gap
        return total


def ramp(final: float, step: int, total_steps: int, warm_fraction: float = 0.8) -> float:
    """Target at this step: linear from 0 to `final` over the first warm_fraction of training."""
    span = max(1, int(total_steps * warm_fraction))
    return final * min(1.0, (step + 1) / span)
