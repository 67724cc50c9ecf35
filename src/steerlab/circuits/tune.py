"""Circuit tuning (SCT): fine-tune only a circuit's parameter slices, or everything but them.

Each unit owns slices: head h owns rows [h·d, (h+1)·d) of q_proj (and bias) and the same columns of
o_proj (optionally its KV group's rows of k_proj/v_proj, shared under GQA, so off by default); MLP
neuron i owns row i of gate_proj and up_proj and column i of down_proj. Gradients are multiplied by
a 0/1 slice mask and AdamW runs with no weight decay, so frozen entries stay bit-identical (checked).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal, Sequence

import torch

from steerlab.circuits.forward import make_batch, mean_nll, response_logits
from steerlab.circuits.units import Circuit
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.progress import progress_bar

Mode = Literal["only", "exclude"]
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def _module(model: Model, layer: int, group: str, name: str) -> torch.nn.Linear:
    block = model.arch.layers[layer]
    parent = getattr(block, model.arch.layout.attn if group == "attn" else model.arch.layout.mlp, None)
    module = getattr(parent, name, None)
    if not isinstance(module, torch.nn.Linear):
        raise SteerlabError(
            f"Circuit tuning needs separate {name} projections; '{model.arch.model_type}' models are not supported."
        )
    return module


def slice_masks(model: Model, circuit: Circuit, include_kv: bool = False) -> dict[torch.nn.Parameter, torch.Tensor]:
    """For every projection weight/bias of every layer: a bool tensor, True where the circuit owns the entry."""
    circuit.check_model(model)
    a = model.arch
    d, group = a.head_dim, a.n_heads // a.n_kv_heads
    out: dict[torch.nn.Parameter, torch.Tensor] = {}
    for layer in range(a.n_layers):
        mods = {n: _module(model, layer, "attn", n) for n in _ATTN} | {n: _module(model, layer, "mlp", n) for n in _MLP}
        own = {n: torch.zeros_like(m.weight, dtype=torch.bool) for n, m in mods.items()}
        bias = {n: torch.zeros_like(m.bias, dtype=torch.bool) for n, m in mods.items() if m.bias is not None}
        for h in circuit.units.get("head", {}).get(layer, []):
            rows = slice(h * d, (h + 1) * d)
            own["q_proj"][rows] = True
            own["o_proj"][:, rows] = True
            if "q_proj" in bias:
                bias["q_proj"][rows] = True
            if include_kv:
                kv = slice((h // group) * d, (h // group + 1) * d)
                for n in ("k_proj", "v_proj"):
                    own[n][kv] = True
                    if n in bias:
                        bias[n][kv] = True
        for i in circuit.units.get("neuron", {}).get(layer, []):
            own["gate_proj"][i] = True
            own["up_proj"][i] = True
            own["down_proj"][:, i] = True
        for n, m in mods.items():
            out[m.weight] = own[n]
            if m.bias is not None:
                out[m.bias] = bias[n]
    return out


@dataclass
class TuneReport:
    mode: str
    trainable_entries: int
    total_entries: int
    changed_entries: int
    frozen_changed: int  # must be 0
    final_loss: float
    seconds: float

    @property
    def frozen_unchanged(self) -> bool:
        return self.frozen_changed == 0


def tune_circuit(
    model: Model,
    circuit: Circuit,
    pairs: Sequence[tuple[str, str]],
    mode: Mode = "only",
    steps: int = 20,
    lr: float = 1e-3,
    batch_size: int = 8,
    include_kv: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> TuneReport:
    """Fine-tune the model in place on (prompt, response) pairs, updating only the allowed slices."""
    if mode not in ("only", "exclude"):
        raise SteerlabError(f"Unknown tuning mode '{mode}'; choose only or exclude.")
    if steps < 1 or batch_size < 1 or not pairs:
        raise SteerlabError("Tuning needs at least one step, a batch size of at least 1 and some pairs.")
    owned = slice_masks(model, circuit, include_kv)
    allow = {p: (m if mode == "only" else ~m) for p, m in owned.items()}
    allow = {p: m for p, m in allow.items() if bool(m.any())}
    if not allow:
        raise SteerlabError("Nothing to train: the circuit owns no parameter slices in this mode.")
    for p in model.hf.parameters():
        p.requires_grad_(False)
    snapshot = {p: p.detach().clone() for p in owned}
    handles = []
    for p, m in allow.items():
        p.requires_grad_(True)
        gate = m.to(p.dtype)
        handles.append(p.register_hook(lambda g, gate=gate: g * gate))
    opt = torch.optim.AdamW(list(allow), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    start, loss_value = time.perf_counter(), float("nan")
    try:
        with progress_bar(progress) as bar:
            task = bar.add_task(f"tune ({mode})", total=steps, info="")
            for _ in range(steps):
                idx = [rng.randrange(len(pairs)) for _ in range(batch_size)]
                batch = make_batch(model, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx])
                with torch.enable_grad():
                    loss = mean_nll(response_logits(model, batch), batch)
                    loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                loss_value = float(loss.detach())
                bar.update(task, advance=1, info=f"loss {loss_value:.3f}")
    finally:
        for h in handles:
            h.remove()
        for p in model.hf.parameters():
            p.requires_grad_(False)
    changed = frozen_changed = trainable = total = 0
    for p, snap in snapshot.items():
        diff = p.detach() != snap
        ok = allow.get(p, torch.zeros_like(diff))
        changed += int(diff.sum())
        frozen_changed += int((diff & ~ok).sum())
        trainable += int(ok.sum())
        total += diff.numel()
    return TuneReport(mode, trainable, total, changed, frozen_changed, loss_value, time.perf_counter() - start)


_ROWS = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")  # a unit owns output rows of these
_COLS = ("o_proj", "down_proj")  # and input columns of these


def lora_slices(
    model: Model, circuit: Circuit, mode: Mode, include_kv: bool = False
) -> dict[str, tuple[str, torch.Tensor]]:
    """Module name -> ('rows' | 'cols', bool vector of the rows or columns a LoRA update may touch); modules
    with nothing to touch are left out. Every unit owns whole rows or columns, so a row mask on B (or a
    column mask on A) restricts the update B·A exactly to the allowed slices."""
    owned = slice_masks(model, circuit, include_kv)
    names = {id(p): n for n, p in model.hf.named_parameters()}
    out = {}
    for p, mask in owned.items():
        name = names[id(p)]
        if not name.endswith(".weight"):
            continue
        module, leaf = name[: -len(".weight")], name.split(".")[-2]
        axis = "rows" if leaf in _ROWS else "cols"
        vec = mask.any(1) if axis == "rows" else mask.any(0)
        allowed = vec if mode == "only" else ~vec
        if bool(allowed.any()):
            out[module] = (axis, allowed)
    return out


def _restrict_adapters(slices: dict[str, tuple[str, torch.Tensor]]):
    """A `prepare` hook for the shared trainer: zero A's disallowed columns, mask A/B gradients to the slices."""

    def prepare(peft_model: torch.nn.Module) -> None:
        found = 0
        for name, module in peft_model.named_modules():
            if not hasattr(module, "lora_A") or "default" not in getattr(module, "lora_A", {}):
                continue
            axis, allowed = slices[name.removeprefix("base_model.model.")]
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            if axis == "rows":
                gate = allowed.to(b.dtype)[:, None]
                with torch.no_grad():
                    b.mul_(gate)
                b.register_hook(lambda g, gate=gate: g * gate)
            else:
                gate = allowed.to(a.dtype)[None, :]
                with torch.no_grad():
                    a.mul_(gate)
                a.register_hook(lambda g, gate=gate: g * gate)
            found += 1
        if found != len(slices):
            raise SteerlabError(
                f"LoRA adapters were made for {found} of the {len(slices)} projections the circuit needs."
            )

    return prepare


def tune_circuit_lora(
    model: Model,
    circuit: Circuit,
    pairs: Sequence[tuple[str, str]],
    mode: Mode = "only",
    steps: int = 20,
    lr: float = 1e-3,
    batch_size: int = 8,
    rank: int = 8,
    include_kv: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> TuneReport:
    """Circuit tuning with LoRA adapters restricted to the circuit's slices (or to all but them), merged into
    `model` in place; the frozen entries are checked to be bit-identical after the merge."""
    from steerlab.training import LoraRecipe, encode_pair, train_lora

    if mode not in ("only", "exclude"):
        raise SteerlabError(f"Unknown tuning mode '{mode}'; choose only or exclude.")
    if not pairs:
        raise SteerlabError("Tuning needs some (prompt, response) pairs.")
    slices = lora_slices(model, circuit, mode, include_kv)
    if not slices:
        raise SteerlabError("Nothing to train: the circuit owns no parameter slices in this mode.")
    owned = slice_masks(model, circuit, include_kv)
    names = {id(p): n for n, p in model.hf.named_parameters()}
    allow = {names[id(p)]: (m if mode == "only" else ~m) for p, m in owned.items()}
    allow = {n: m for n, m in allow.items() if n.removesuffix(".weight") in slices and n.endswith(".weight")}
    snapshot = {n: p.detach().clone() for n, p in model.hf.named_parameters()}
    recipe = LoraRecipe(rank=rank, lr=lr, steps=steps, batch_size=batch_size, targets=tuple(slices), seed=seed)
    start = time.perf_counter()
    tuned, info = train_lora(
        model,
        [encode_pair(model, p, r) for p, r in pairs],
        recipe,
        in_place=True,
        name=model.name,
        progress=progress,
        prepare=_restrict_adapters(slices),
    )
    changed = frozen_changed = 0
    for n, p in tuned.hf.named_parameters():  # the merge happened in model.hf itself (in_place)
        diff = p.detach() != snapshot[n]
        changed += int(diff.sum())
        frozen_changed += int((diff & ~allow[n]).sum()) if n in allow else int(diff.sum())
    trainable = sum(int(m.sum()) for m in allow.values())
    total = sum(p.numel() for p in owned)
    return TuneReport(
        f"lora-{mode}", trainable, total, changed, frozen_changed, info["losses"][-1], time.perf_counter() - start
    )
