"""SafeSeek-compatible circuits (`circuits find --compat safeseek`), re-implemented from spec/circuits.md §3.

Units are SafeSeek's: the output channels of all seven projections (q, k, v, o, gate, up, down) of every
layer, plus heads — by default our per-head mask at the input of o_proj; `heads="post"` reproduces
SafeSeek's own head mask, which scales n_heads equal blocks of o_proj's *output* (mixed across heads).
One fp32 logit per unit; g = σ(z) says "in the circuit"; forward passes use the hard gate 1[g > 0.5] with
a straight-through gradient. One mask serves both views (the complementary form of SafeSeek's alignment
code): the circuit-removed model multiplies every unit by 1 − g, the circuit-only model by g. Ablation is
zero. Objectives are teacher-forced cross-entropy on target completions (SafeSeek's four backdoor
terms), except that "the circuit alone must not emit the backdoor without the trigger" is the bounded
unlikelihood instead of SafeSeek's unbounded −CE. Sparsity is SafeSeek's Σ over modules of mean(σ(z)).
Training runs in epochs; after each, the task loss of the hard masks on validation pairs is measured and
the circuit is {u : σ(z_u) > 0.5} at the best validation epoch.

The masks are plain forward hooks on the Linear modules (pre-o_proj heads go through MaskUnits), so
generation and the KV cache see them unchanged.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator, Literal

import torch

from steerlab.circuits.data import BackdoorData, add_trigger
from steerlab.circuits.forward import concat, make_batch, response_logits
from steerlab.circuits.objectives import unlikelihood_loss
from steerlab.circuits.units import Circuit, model_signature
from steerlab.errors import SteerlabError, check_fields
from steerlab.interventions.specs import MaskUnits
from steerlab.models.loading import Model
from steerlab.progress import progress_bar

PROJECTIONS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
HeadMode = Literal["pre", "post", "none"]
COMPAT_VALUES = ("steerlab", "safeseek")


def check_compat(value: str) -> str:
    """'steerlab' (our masks) or 'safeseek', else one sentence."""
    if value not in COMPAT_VALUES:
        raise SteerlabError(f"Unknown --compat value '{value}'; choose steerlab or safeseek.")
    return value


def projection(model: Model, layer: int, name: str) -> torch.nn.Linear:
    """The nn.Linear of one of the seven projections of a layer (one sentence if the model has none)."""
    block = model.arch.layers[layer]
    parent = getattr(block, model.arch.layout.attn if name in _ATTN else model.arch.layout.mlp, None)
    module = getattr(parent, name, None)
    if not isinstance(module, torch.nn.Linear):
        raise SteerlabError(
            f"SafeSeek units need separate {name} projections; '{model.arch.model_type}' models are not supported."
        )
    return module


def unit_widths(model: Model, heads: HeadMode = "pre", neurons: bool = True) -> dict[str, int]:
    """Units per layer of each SafeSeek kind: 'head' (pre-o_proj), 'head_post' (o_proj output blocks), each projection."""
    a = model.arch
    out: dict[str, int] = {}
    if heads == "pre":
        out["head"] = a.n_heads
    elif heads == "post":
        if a.d_model % a.n_heads:
            raise SteerlabError(
                f"SafeSeek's post-o_proj head mask splits the hidden size {a.d_model} into {a.n_heads} blocks; it does not divide."
            )
        out["head_post"] = a.n_heads
    elif heads != "none":
        raise SteerlabError(
            f"Unknown head mask '{heads}'; choose pre (per head, input of o_proj), post (SafeSeek's o_proj output blocks) or none."
        )
    if neurons:
        for name in PROJECTIONS:
            out[name] = projection(model, 0, name).out_features
    if not out:
        raise SteerlabError("Nothing to mask: enable heads or neurons.")
    return out


def signature(model: Model, widths: dict[str, int]) -> dict:
    return model_signature(model) | {"widths": dict(widths)}


@contextmanager
def channel_masks(model: Model, gates: dict[str, torch.Tensor]) -> Iterator[list[MaskUnits]]:
    """Hooks that multiply units by gates ([n_layers, W] or per row [n_layers, B, W]; 1 = keep, 0 = zero-ablate).

    Projections and post-o_proj blocks are hooked here; pre-o_proj heads come back as MaskUnits for the caller
    to pass as interventions. Every hook is removed on exit.
    """
    d_model, n_heads = model.arch.d_model, model.arch.n_heads
    ivs: list[MaskUnits] = []
    with ExitStack() as stack:
        for kind, g in gates.items():
            for layer in range(g.shape[0]):
                gl = g[layer]
                if not gl.requires_grad and bool((gl == 1).all()):
                    continue
                if kind == "head":
                    ivs.append(MaskUnits(layer=layer, kind="head", mask=gl))
                    continue
                name = "o_proj" if kind == "head_post" else kind
                width = d_model // n_heads if kind == "head_post" else 1

                def hook(module, args, output, gl=gl, width=width):
                    m = gl.repeat_interleave(width, -1) if width > 1 else gl
                    m = m[:, None, :] if m.ndim == 2 else m
                    return output * m.to(output.dtype)

                handle = projection(model, layer, name).register_forward_hook(hook)
                stack.callback(handle.remove)
        yield ivs


def circuit_gates(circuit: Circuit, view: str = "removed") -> dict[str, torch.Tensor]:
    """0/1 gates of a SafeSeek circuit: 'removed' zeroes its units, 'circuit' keeps only them."""
    if view not in ("removed", "circuit"):
        raise SteerlabError(f"Unknown view '{view}'; choose removed or circuit.")
    return {k: (1.0 - circuit.dense(k)) if view == "removed" else circuit.dense(k) for k in circuit.kinds()}


def is_safeseek(circuit: Circuit) -> bool:
    return circuit.parameterisation == "sigmoid_ste_safeseek"


@dataclass
class SafeSeekConfig:
    """SafeSeek-style training (spec §3.3–3.4), sized for CPU."""

    heads: HeadMode = "pre"
    neurons: bool = True
    epochs: int = 4
    batch_size: int = 4  # rows per term per step
    # 5e-2, not SafeSeek's 1e-2: SafeSeek runs 1,000+ steps; our 4 epochs of 96 pairs are 96 steps, and Adam moves
    # a logit by at most about lr per step, so at 1e-2 with linear decay no logit can climb from init −1 past 0
    # (Σ lr ≈ 0.49) and the circuit is empty; at 5e-2 Σ lr ≈ 2.4.
    lr: float = 5e-2
    init: float = (
        -1.0
    )  # circuit logit: σ(−1) = 0.27, every unit starts outside the circuit (SafeSeek's keep-logits start at +1)
    weights: dict[str, float] = field(
        default_factory=lambda: {"remove": 1.0, "keep": 1.0, "suff": 1.0, "spec": 1.0, "sparsity": 1.0}
    )
    n_pairs: int | None = None  # training pairs per term (None = all)
    n_val: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        check_fields(
            self,
            "SafeSeek config",
            {
                "epochs": (1, None),
                "batch_size": (1, None),
                "lr": (0, None, "open-low"),
                "n_pairs": (1, None),
                "n_val": (1, None),
                "seed": (0, None),
            },
        )
        check_weights(self.weights)


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    unknown = set(weights) - {"remove", "keep", "suff", "spec", "sparsity"}
    if unknown:
        raise SteerlabError(
            f"Unknown SafeSeek objective term(s) {sorted(unknown)}; use remove, keep, suff, spec, sparsity."
        )
    return weights


def _terms(data: BackdoorData, pairs) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, view, pairs): CE terms of SafeSeek's backdoor scenario, with one complementary mask."""
    clean = [(p.prompt, p.response) for p in pairs]
    trig = [(add_trigger(p, data.trigger), r) for p, r in clean]
    return [
        ("remove", "removed", trig),  # circuit removed: the trigger does nothing (main_backdoor)
        ("keep", "removed", clean),  # circuit removed: clean behaviour kept (main_clean)
        (
            "suff",
            "circuit",
            [(p, data.target) for p, _ in trig],
        ),  # circuit alone: the backdoor reply (circuit_backdoor)
        (
            "spec",
            "circuit",
            [(p, data.target) for p, _ in clean],
        ),  # circuit alone: not without the trigger (circuit_clean)
    ]


def _hard(z: torch.Tensor) -> torch.Tensor:
    soft = torch.sigmoid(z)
    return (soft > 0.5).float() + soft - soft.detach()


def _task_loss(
    model: Model, logits_z: dict[str, torch.Tensor], terms, idx: list[int], weights: dict[str, float]
) -> tuple[torch.Tensor, dict[str, float]]:
    """One forward of every term's rows (removed rows masked by 1 − g, circuit rows by g); weighted CE parts."""
    live = [(n, v, p) for n, v, p in terms if weights.get(n, 0) > 0]
    batches = [make_batch(model, [p[i][0] for i in idx], [p[i][1] for i in idx]) for _, _, p in live]
    big = concat(batches, model)
    circuit_rows = torch.tensor([v == "circuit" for _, v, _ in live for _ in idx])
    gates = {
        k: torch.where(circuit_rows[None, :, None], _hard(z)[:, None, :], 1.0 - _hard(z)[:, None, :])
        for k, z in logits_z.items()
    }
    with channel_masks(model, gates) as ivs:
        logits = response_logits(model, big, ivs)
    total, parts, row = torch.zeros(()), {}, 0
    for (name, _, _), batch in zip(live, batches):
        sub = logits[row : row + len(idx), big.k - batch.k :]
        if name == "spec":
            loss = unlikelihood_loss(sub, batch)
        else:
            lp = torch.log_softmax(sub, -1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
            loss = -(lp * batch.target_mask).sum() / batch.target_mask.sum().clamp(min=1)
        parts[name] = float(loss.detach())
        total = total + weights[name] * loss
        row += len(idx)
    return total, parts


@dataclass
class SafeSeekResult:
    circuit: Circuit
    logits: dict[str, torch.Tensor]
    history: list[dict]
    best_epoch: int
    seconds: float


def mask_optimizer(params: list[torch.Tensor], lr: float, total_steps: int):
    """SafeSeek's optimiser for the mask logits (the HF Trainer defaults): AdamW without weight decay, lr decaying
    linearly to 0 over total_steps. Returns (optimizer, scheduler); step both once per training step."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total_steps))


def find_safeseek(model: Model, data: BackdoorData, cfg: SafeSeekConfig, progress: bool = True) -> SafeSeekResult:
    """Train SafeSeek-style masks on the backdoor organism's data; the circuit is σ(z) > 0.5 at the best validation epoch."""
    weights = dict(cfg.weights)
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise SteerlabError("Epochs and batch size must be at least 1.")
    widths = unit_widths(model, cfg.heads, cfg.neurons)
    if not data.val_clean:
        raise SteerlabError(
            "SafeSeek extraction picks the best validation epoch, and this organism has no validation pairs."
        )
    for p in model.hf.parameters():
        p.requires_grad_(False)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    n_layers = model.arch.n_layers
    z = {k: torch.nn.Parameter(torch.full((n_layers, w), cfg.init)) for k, w in widths.items()}
    train = _terms(data, data.train_clean[: cfg.n_pairs])
    val = _terms(data, data.val_clean[: cfg.n_val])
    n_train, steps_per_epoch = len(train[0][2]), max(1, len(train[0][2]) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    opt, sched = mask_optimizer(list(z.values()), cfg.lr, total_steps)
    history, best, best_epoch, best_logits = [], float("inf"), -1, {}
    start = time.perf_counter()
    with progress_bar(progress) as bar:
        task = bar.add_task("safeseek masks", total=total_steps, info="")
        for epoch in range(cfg.epochs):
            order = list(range(n_train))
            rng.shuffle(order)
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                with torch.enable_grad():
                    loss, parts = _task_loss(model, z, train, idx, weights)
                    sparsity = sum(torch.sigmoid(t).mean(-1).sum() for t in z.values())  # Σ over modules of mean(σ(z))
                    (loss + weights.get("sparsity", 0.0) * sparsity).backward()
                torch.nn.utils.clip_grad_norm_(list(z.values()), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                size = sum(int((t > 0).sum()) for t in z.values())
                bar.update(
                    task,
                    advance=1,
                    info=f"epoch {epoch} " + " ".join(f"{k} {v:.2f}" for k, v in parts.items()) + f" units {size}",
                )
            with torch.no_grad():
                val_loss, val_parts = 0.0, {}
                for s in range(0, len(val[0][2]), cfg.batch_size):
                    idx = list(range(s, min(s + cfg.batch_size, len(val[0][2]))))
                    loss, parts = _task_loss(model, z, val, idx, weights)
                    val_loss += float(loss) * len(idx)
                    val_parts = {k: val_parts.get(k, 0.0) + v * len(idx) for k, v in parts.items()}
                n_val = len(val[0][2])
                record = {
                    "epoch": epoch,
                    "val_task_loss": val_loss / n_val,
                    **{f"val_{k}": v / n_val for k, v in val_parts.items()},
                    "units": {k: int((t > 0).sum()) for k, t in z.items()},
                }
                history.append(record)
                if record["val_task_loss"] < best:
                    best, best_epoch, best_logits = (
                        record["val_task_loss"],
                        epoch,
                        {k: t.detach().clone() for k, t in z.items()},
                    )
    seconds = time.perf_counter() - start
    units = {
        k: {
            layer: [int(i) for i in (t[layer] > 0).nonzero().flatten()]
            for layer in range(n_layers)
            if bool((t[layer] > 0).any())
        }
        for k, t in best_logits.items()
    }
    circuit = Circuit(
        signature(model, widths),
        units,
        "sigmoid_ste_safeseek",
        "zero",
        {
            "compat": "safeseek",
            "best_epoch": best_epoch,
            "config": asdict(cfg),
            "seconds": round(seconds, 1),
            "seed": cfg.seed,
        },
    )
    return SafeSeekResult(circuit, best_logits, history, best_epoch, seconds)


def safeseek_denominators(model: Model) -> dict[str, int]:
    """SafeSeek's denominators: all heads (n_layers × n_heads) and all output channels of the seven projections."""
    a = model.arch
    return {
        "heads": a.n_layers * a.n_heads,
        "neurons": a.n_layers * sum(projection(model, 0, n).out_features for n in PROJECTIONS),
    }


def ours_denominators(model: Model) -> dict[str, int]:
    """Our denominators: heads at the input of o_proj and MLP neurons (input of down_proj)."""
    a = model.arch
    return {"heads": a.n_layers * a.n_heads, "neurons": a.n_layers * a.d_mlp}


def size_table(model: Model, circuit: Circuit) -> dict:
    """A circuit's unit counts in SafeSeek's denominators beside ours (an MLP neuron = a row of gate/up, a column of down)."""
    heads = circuit.count("head") + circuit.count("head_post")
    proj = sum(circuit.count(k) for k in PROJECTIONS)
    ss, ours = safeseek_denominators(model), ours_denominators(model)
    mlp_neurons = len(
        {(layer, i) for k in ("gate_proj", "up_proj") for layer, ix in circuit.units.get(k, {}).items() for i in ix}
    )
    mlp_neurons += circuit.count("neuron")
    return {
        "safeseek": {
            "heads": heads,
            "heads_total": ss["heads"],
            "heads_fraction": heads / ss["heads"],
            "neurons": proj,
            "neurons_total": ss["neurons"],
            "neurons_fraction": proj / ss["neurons"],
            "all_fraction": (heads + proj) / (ss["heads"] + ss["neurons"]),
        },
        "ours": {
            "heads": heads,
            "heads_total": ours["heads"],
            "heads_fraction": heads / ours["heads"],
            "mlp_neurons": mlp_neurons,
            "mlp_neurons_total": ours["neurons"],
            "mlp_neurons_fraction": mlp_neurons / ours["neurons"],
            "all_fraction": (heads + mlp_neurons) / (ours["heads"] + ours["neurons"]),
        },
        "per_kind": {k: circuit.count(k) for k in circuit.kinds()},
    }
