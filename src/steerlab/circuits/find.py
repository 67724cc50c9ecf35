"""Find a circuit: train unit masks on objective terms to per-kind sparsity targets, then take the top-k.

One step samples gates once, stacks every term's rows into one forward (rows of the "removed" view
get mask 1 − g, rows of the "circuit" view get g), and updates only the fp32 mask logits (Adam) and
the Lagrange multipliers (gradient ascent). Model weights are frozen and get no gradient.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from steerlab.circuits.ablation import Ablation, Means, check_ablation, gate_interventions
from steerlab.circuits.forward import concat, make_batch, response_logits
from steerlab.circuits.masks import Lagrangian, Param, UnitMasks, check_fraction, ramp
from steerlab.circuits.objectives import Term, fill_teachers, kl_loss, unlikelihood_loss
from steerlab.circuits.units import Circuit
from steerlab.errors import SteerlabError, check_fields
from steerlab.models.loading import Model
from steerlab.paths import atomic_path
from steerlab.progress import progress_bar


@dataclass
class FindConfig:
    """Mask-training settings (defaults follow spec §8.3, sized for CPU)."""

    targets: dict[str, float]  # kind -> final fraction of units in the circuit
    steps: int = 200
    batch_size: int = 4  # rows per term per step
    lr: float = 0.1
    param: Param = "hard_concrete"
    ablation: Ablation = "mean"
    init_p: float = 0.05
    warm_fraction: float = 0.8
    teacher_k: int = 32
    seed: int = 0
    layers: list[int] | None = None  # search only these layers (None = all); targets stay fractions of all units
    attribution_batches: int = 2  # gradient-attribution warm start of the logits (0 = off)
    attribution_scale: float = 1.5

    def __post_init__(self) -> None:
        check_fields(
            self,
            "circuit search config",
            {
                "steps": (1, None),
                "batch_size": (1, None),
                "lr": (0, None, "open-low"),
                "init_p": (0, 1, "open"),
                "warm_fraction": (0, 1),
                "teacher_k": (1, None),
                "seed": (0, None),
                "layers": (0, None),
                "attribution_batches": (0, None),
                "attribution_scale": (0, None, "open-low"),
            },
        )
        if not self.targets:
            raise SteerlabError("Give at least one sparsity target, e.g. --head-target 0.02.")
        for kind, t in self.targets.items():
            check_fraction(t, f"{kind} sparsity target")
        check_fraction(self.warm_fraction, "warm-up fraction")
        if self.layers is not None and not self.layers:
            raise SteerlabError("The layer list is empty; give at least one layer to search, or none for all.")


@dataclass
class Checkpoint:
    """A mask search's saved state (masks, multipliers, both optimisers, RNGs, history), written every `every`
    steps; `key` says which search it belongs to, and a file with another key is ignored (and overwritten)."""

    path: Path
    key: dict
    every: int = 10

    def load(self) -> dict | None:
        """The saved state of this search, or None when there is none (or it belongs to another search)."""
        if not self.path.is_file():
            return None
        state = torch.load(self.path, weights_only=False)
        return state if state.get("key") == json.loads(json.dumps(self.key, default=str)) else None

    def save(self, state: dict) -> None:
        """Write the state atomically (a stop mid-write leaves the previous checkpoint)."""
        with atomic_path(self.path) as tmp:
            torch.save(state | {"key": json.loads(json.dumps(self.key, default=str))}, tmp)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class FindResult:
    circuit: Circuit
    masks: UnitMasks
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def _row_gates(gates: dict[str, torch.Tensor], views: list[str]) -> dict[str, torch.Tensor]:
    """Per-row masks [n_layers, B, n]: 1 − g for 'removed' rows, g for 'circuit' rows."""
    circuit_rows = torch.tensor([v == "circuit" for v in views])
    return {k: torch.where(circuit_rows[None, :, None], g[:, None, :], 1.0 - g[:, None, :]) for k, g in gates.items()}


def _term_loss(term: Term, logits: torch.Tensor, batch, idx: list[int]) -> torch.Tensor:
    if term.loss == "kl":
        return kl_loss(logits, batch, [term.teacher[i] for i in idx])
    return unlikelihood_loss(logits, batch, term.first_tokens)


def _layer_filter(gates: dict[str, torch.Tensor], layers: list[int] | None) -> dict[str, torch.Tensor]:
    """Units outside the searched layers are never in the circuit (gate 0, no gradient)."""
    if layers is None:
        return gates
    keep = torch.zeros(next(iter(gates.values())).shape[0], 1)
    keep[layers] = 1.0
    return {k: g * keep for k, g in gates.items()}


def mask_step(
    model: Model,
    gates: dict[str, torch.Tensor],
    terms: Sequence[Term],
    picks: list[list[int]],
    ablation: Ablation,
    means: Means | None,
    layers: list[int] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward of all terms' rows under the gates (g = in the circuit); returns the weighted task loss and its parts."""
    batches = [
        make_batch(model, [t.pairs[i][0] for i in idx], [t.pairs[i][1] for i in idx]) for t, idx in zip(terms, picks)
    ]
    views = [t.view for t, idx in zip(terms, picks) for _ in idx]
    big = concat(batches, model)
    gates = _row_gates(_layer_filter(gates, layers), views)
    ivs = gate_interventions(model, gates, ablation, means)
    if layers is not None and "circuit" not in views:  # unsearched layers keep every unit: no hook needed
        ivs = [iv for iv in ivs if iv.layer in set(layers)]
    with torch.enable_grad():
        logits = response_logits(model, big, ivs)
    parts, total, row = {}, torch.zeros(()), 0
    for term, batch, idx in zip(terms, batches, picks):
        n = len(idx)
        sub = logits[row : row + n, big.k - batch.k :]
        loss = _term_loss(term, sub, batch, idx)
        parts[term.name] = float(loss.detach())
        total = total + term.weight * loss
        row += n
    return total, parts


def attribution_warm_start(
    model: Model, masks: UnitMasks, terms: Sequence[Term], cfg: FindConfig, means: Means | None, rng: random.Random
) -> None:
    """First-order scores (−dL/dg at g = 0, i.e. the gain from removing each unit) shift the initial logits,
    so a short CPU budget starts from an informed ranking (the EAP-style initialiser of spec §9)."""
    zeros = {k: torch.zeros_like(z, requires_grad=True) for k, z in masks.logits.items()}
    for _ in range(cfg.attribution_batches):
        picks = [[rng.randrange(len(t.pairs)) for _ in range(cfg.batch_size)] for t in terms]
        loss, _ = mask_step(model, zeros, terms, picks, cfg.ablation, means, cfg.layers)
        loss.backward()
    with torch.no_grad():
        for kind, g in zeros.items():
            score = -g.grad
            z = (score - score.mean()) / score.std().clamp(min=1e-12)
            masks.logits[kind].add_(cfg.attribution_scale * z.clamp(-3, 3))


def find_circuit(
    model: Model,
    terms: Sequence[Term],
    cfg: FindConfig,
    means: Means | None = None,
    progress: bool = True,
    checkpoint: Checkpoint | None = None,
    **meta,
) -> FindResult:
    """Train masks on the terms and extract the top round(target × n) units per kind.

    Args:
        model: the model whose heads and neurons are masked (its weights are frozen, not changed).
        terms: the weighted objective terms (e.g. `backdoor_terms`, `alignment_terms`); at least one.
        cfg: the mask parameterisation, targets per kind, layers, ablation, steps, learning rate and seed.
        means: per-unit mean activations, required when cfg.ablation is "mean".
        progress: show a progress bar.
        checkpoint: where to save the training state every few steps and resume it from (a long CPU search
            then survives being stopped); None = no checkpoints.
        **meta: extra fields recorded in the circuit (e.g. scenario="backdoor").

    Returns:
        A FindResult: the extracted Circuit, the trained UnitMasks, the per-step history and the seconds spent.
    """
    check_ablation(cfg.ablation, means)
    if not terms:
        raise SteerlabError("No objective terms have a positive weight; give at least one.")
    for p in model.hf.parameters():
        p.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    fill_teachers(model, terms, cfg.teacher_k)
    kinds = tuple(cfg.targets)
    for layer in cfg.layers or []:
        model.arch.check_layer(layer)
    masks = UnitMasks(model, kinds, cfg.param, cfg.init_p)
    lagrangian = Lagrangian(kinds)
    state = checkpoint.load() if checkpoint is not None else None
    if cfg.attribution_batches > 0 and state is None:
        attribution_warm_start(model, masks, terms, cfg, means, rng)
    opt = torch.optim.Adam(masks.parameters(), lr=cfg.lr)
    opt_lam = torch.optim.Adam(lagrangian.parameters(), lr=cfg.lr, maximize=True)
    modules = {"masks": masks, "lagrangian": lagrangian, "opt": opt, "opt_lam": opt_lam}
    history: list[dict] = []
    first, before = 0, 0.0
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state[name])
        rng.setstate(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        history, first, before = state["history"], state["step"], state["seconds"]
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("masks", total=cfg.steps, completed=first, info="")
        for step in range(first, cfg.steps):
            picks = [[rng.randrange(len(t.pairs)) for _ in range(cfg.batch_size)] for t in terms]
            task_loss, parts = mask_step(model, masks.sample(), terms, picks, cfg.ablation, means, cfg.layers)
            expected = masks.expected_l0(cfg.layers)
            targets = {k: ramp(cfg.targets[k], step, cfg.steps, cfg.warm_fraction) for k in kinds}
            loss = task_loss + lagrangian(expected, targets)
            opt.zero_grad(set_to_none=True)
            opt_lam.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            opt_lam.step()
            record = {
                "step": step,
                "loss": float(task_loss.detach()),
                **parts,
                **{f"l0_{k}": float(v.detach()) for k, v in expected.items()},
            }
            history.append(record)
            info = (
                " ".join(f"{k} {v:.3f}" for k, v in parts.items())
                + " "
                + " ".join(f"E[{k}] {record['l0_' + k]:.3%}" for k in expected)
            )
            bar.update(task, advance=1, info=info)
            if checkpoint is not None and (step + 1) % checkpoint.every == 0 and step + 1 < cfg.steps:
                checkpoint.save(
                    {name: module.state_dict() for name, module in modules.items()}
                    | {
                        "rng": rng.getstate(),
                        "torch_rng": torch.get_rng_state(),
                        "history": history,
                        "step": step + 1,
                        "seconds": before + time.perf_counter() - start,
                    }
                )
    seconds = before + time.perf_counter() - start
    circuit = masks.extract(
        model,
        cfg.targets,
        layers=cfg.layers,
        steps=cfg.steps,
        seed=cfg.seed,
        targets=cfg.targets,
        searched_layers=cfg.layers,
        train_ablation=cfg.ablation,
        seconds=round(seconds, 1),
        **meta,
    )
    circuit.ablation = cfg.ablation
    return FindResult(circuit, masks, history, seconds)
