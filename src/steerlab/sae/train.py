"""Train an SAE on one site of a model: TopK (+AuxK), BatchTopK, JumpReLU or ReLU+L1.

Activations stream from a corpus through a shuffling buffer (the model runs only up to the layer).
Training happens in a normalised space (inputs scaled so their mean norm is sqrt(d_in)); the scale
is kept in the saved SAE's config, so it reads raw model activations. Decoder rows stay unit-norm
(gradient parallel to each row removed before the step, rows renormalised after). The learning rate
warms up linearly and decays linearly to zero over the last `decay_fraction` of the steps.

TopK and BatchTopK never form the dense [batch, d_sae] gradient: the top latents are selected
without gradients, then only their pre-activations are recomputed with gradients (O(batch*k*d)).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from steerlab.data.corpus import Corpus
from steerlab.errors import SteerlabError, check_fields
from steerlab.models.loading import Model
from steerlab.paths import atomic_path, write_json
from steerlab.sae.buffer import ShufflingBuffer
from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.harvest import iter_activations, no_grad_model
from steerlab.sae.hookpoints import hook_name
from steerlab.sae.loading import save_sae
from steerlab.schedule import warmup_decay

ARCHS = ("topk", "batchtopk", "jumprelu", "relu")
CHECKPOINT = "checkpoint.pt"


@dataclass
class TrainConfig:
    """Everything that changes a trained SAE; saved beside it as train_config.json."""

    layer: int
    site: str = "resid_post"
    arch: str = "topk"
    d_sae: int | None = None  # default: expansion * d_in
    expansion: int = 8
    k: int = 32  # TopK / BatchTopK
    n_tokens: int = 1_000_000  # training tokens (steps = n_tokens // batch_size)
    batch_size: int = 1024
    lr: float | None = None  # default: 2e-4 * sqrt(16384 / d_sae) (TopK paper scaling), x5 for short runs
    warmup_steps: int = 50
    decay_fraction: float = 0.2
    buffer_tokens: int = 65_536
    reuse: float = 1.0  # times each harvested activation is seen (>1 when the model forward is the bottleneck)
    context_len: int = 128
    harvest_rows: int = 16
    normalization: str = "expected_average_norm"  # or "none" / "constant" (then input_scale)
    input_scale: float = 1.0
    auxk_coeff: float = 1 / 32
    dead_after_tokens: int | None = None  # a latent is dead after this many tokens without firing
    l1_coeff: float = 0.05  # ReLU: weight of the L1 penalty (on normalised latents x decoder norms)
    l0_coeff: float = 2e-3  # JumpReLU: weight of the L0 penalty
    jumprelu_bandwidth: float = 0.05
    jumprelu_init_threshold: float = 0.1
    batchtopk_inference: str = "threshold"
    held_out: float = 0.05
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        check_fields(
            self,
            "SAE training config",
            {
                "layer": (0, None),
                "d_sae": (1, None),
                "expansion": (1, None),
                "k": (0, None),
                "n_tokens": (1, None),
                "batch_size": (1, None),
                "lr": (0, None, "open-low"),
                "warmup_steps": (0, None),
                "decay_fraction": (0, 1),
                "buffer_tokens": (1, None),
                "reuse": (0, None, "open-low"),
                "context_len": (2, None),
                "harvest_rows": (1, None),
                "input_scale": (0, None, "open-low"),
                "auxk_coeff": (0, None),
                "dead_after_tokens": (1, None),
                "l1_coeff": (0, None),
                "l0_coeff": (0, None),
                "jumprelu_bandwidth": (0, None, "open-low"),
                "jumprelu_init_threshold": (0, None),
                "held_out": (0, 1, "open-high"),
                "seed": (0, None),
                "checkpoint_every": (0, None),
                "log_every": (0, None),
                "grad_clip": (0, None, "open-low"),
            },
        )
        if self.arch not in ARCHS:
            raise SteerlabError(f"Unknown SAE architecture '{self.arch}'; choose one of: {', '.join(ARCHS)}.")
        if self.n_tokens < self.batch_size:
            raise SteerlabError(f"n_tokens ({self.n_tokens}) must be at least one batch ({self.batch_size}).")
        if self.arch in ("topk", "batchtopk") and self.k < 1:
            raise SteerlabError("k must be at least 1.")

    @property
    def steps(self) -> int:
        return self.n_tokens // self.batch_size


@dataclass
class TrainResult:
    """What a training run produced."""

    sae: Sae
    folder: Path
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)


# -- JumpReLU straight-through estimators (Rajamanoharan et al. 2024) --------------------------------
def _rect(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_pre = grad * (pre > threshold)
        grad_thr = (-(threshold / bw) * _rect((pre - threshold) / bw) * grad).sum(0)
        return grad_pre, grad_thr, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad):
        pre, threshold = ctx.saved_tensors
        bw = ctx.bandwidth
        grad_thr = (-(1.0 / bw) * _rect((pre - threshold) / bw) * grad).sum(0)
        return torch.zeros_like(pre), grad_thr, None


class _Params(nn.Module):
    """Training-time parameters; the encoder is stored [d_sae, d_in] so selected rows gather contiguously."""

    def __init__(self, d_in: int, d_sae: int, gen: torch.Generator, init_threshold: float):
        super().__init__()
        w = torch.randn(d_sae, d_in, generator=gen)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w.clone())
        self.W_enc_t = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(init_threshold)))


def _sparse_select(
    x: torch.Tensor, p: _Params, idx: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recompute the selected [B, k] pre-activations with gradients (kept ones only) and decode them (no bias)."""
    enc = F.embedding(idx, p.W_enc_t)  # [B, k, d]
    vals = torch.relu(torch.einsum("bkd,bd->bk", enc, x) + p.b_enc[idx]) * keep
    recon = torch.einsum("bk,bkd->bd", vals, F.embedding(idx, p.W_dec))
    return vals, recon


def _loss_step(
    cfg: TrainConfig, p: _Params, x: torch.Tensor, dead: torch.Tensor, state: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """One batch's loss, logged numbers and the [d_sae] bool mask of latents that fired."""
    xc = x - p.b_dec
    total_var = (x - x.mean(0)).pow(2).sum()
    logs: dict[str, float] = {}
    b = x.shape[0]
    if cfg.arch in ("topk", "batchtopk"):
        with torch.no_grad():
            pre = xc @ p.W_enc_t.T + p.b_enc
            if cfg.arch == "topk":
                vals, idx = pre.topk(cfg.k, dim=-1)
                keep = vals > 0
            else:
                flat = torch.relu(pre).reshape(-1)
                vals, flat_idx = flat.topk(cfg.k * b)
                if (vals > 0).any():  # running estimate of the inference threshold
                    low = float(vals[vals > 0].min())
                    theta = state.get("theta")
                    state["theta"] = low if theta is None else 0.99 * theta + 0.01 * low
                chosen = torch.zeros_like(flat, dtype=torch.bool)
                chosen[flat_idx[vals > 0]] = True
                chosen = chosen.view_as(pre)
                width = max(1, int(chosen.sum(-1).max()))  # pad each row's selection to the widest row
                score = torch.where(chosen, pre, torch.full_like(pre, float("-inf")))
                _, idx = score.topk(width, dim=-1)
                keep = chosen.gather(-1, idx)
        acts, recon = _sparse_select(xc, p, idx, keep)
        cols = idx[keep]
        x_hat = recon + p.b_dec
        err = x_hat - x
        fvu = err.pow(2).sum() / total_var
        loss = fvu
        fired = torch.zeros(p.b_enc.shape[0], dtype=torch.bool)
        fired[cols] = True
        l0 = cols.numel() / b
        n_dead = int(dead.sum())
        if n_dead > 0 and cfg.auxk_coeff > 0:
            k_aux = min(x.shape[1] // 2, n_dead)
            scale = min(n_dead / (x.shape[1] // 2), 1.0)
            dead_idx = dead.nonzero().squeeze(-1)
            aux_pre = torch.relu(xc @ p.W_enc_t[dead_idx].T + p.b_enc[dead_idx])  # [B, n_dead], dense but narrow
            aux_vals, aux_pos = aux_pre.topk(k_aux, dim=-1)
            aux_z = torch.zeros_like(aux_pre).scatter(-1, aux_pos, aux_vals)
            aux_recon = aux_z @ p.W_dec[dead_idx]
            auxk = scale * (aux_recon - (x - x_hat).detach()).pow(2).sum() / total_var
            loss = loss + cfg.auxk_coeff * auxk
            logs["auxk"] = float(auxk.detach())
    else:
        pre = xc @ p.W_enc_t.T + p.b_enc
        if cfg.arch == "relu":
            z = torch.relu(pre)
            x_hat = z @ p.W_dec + p.b_dec
            fvu = (x_hat - x).pow(2).sum() / total_var
            sparsity = (z * p.W_dec.norm(dim=1)).sum(-1).mean() / math.sqrt(x.shape[1])
            loss = fvu + cfg.l1_coeff * sparsity
        else:
            threshold = p.log_threshold.exp()
            z = _JumpReLU.apply(torch.relu(pre), threshold, cfg.jumprelu_bandwidth)
            x_hat = z @ p.W_dec + p.b_dec
            fvu = (x_hat - x).pow(2).sum() / total_var
            l0_soft = _Step.apply(torch.relu(pre), threshold, cfg.jumprelu_bandwidth).sum(-1).mean()
            loss = fvu + cfg.l0_coeff * l0_soft
        with torch.no_grad():
            active = z > 0
            fired = active.any(0)
            l0 = float(active.sum(-1).float().mean())
    logs.update(loss=float(loss.detach()), fvu=float(fvu.detach()), l0=float(l0))
    return loss, logs, fired


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    decay_start = int(cfg.steps * (1 - cfg.decay_fraction)) if cfg.decay_fraction > 0 else None
    return warmup_decay(step, steps=cfg.steps, warmup_steps=cfg.warmup_steps, decay_start=decay_start)


def default_lr(d_sae: int) -> float:
    """TopK paper's 2e-4 * sqrt(2^14 / d_sae), x5 because CPU runs take ~1000 steps, not ~100k."""
    return 5 * 2e-4 * math.sqrt(16384 / d_sae)


@torch.no_grad()
def _constrain_decoder(p: _Params) -> None:
    p.W_dec.div_(p.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))


@torch.no_grad()
def _remove_parallel_grad(p: _Params) -> None:
    if p.W_dec.grad is not None:
        parallel = (p.W_dec.grad * p.W_dec).sum(-1, keepdim=True)
        p.W_dec.grad.sub_(parallel * p.W_dec)


def _to_sae(
    p: _Params, cfg: TrainConfig, d_in: int, d_sae: int, scale: float, model_name: str, state: dict[str, Any]
) -> Sae:
    activation = {"topk": "topk", "batchtopk": "batchtopk", "jumprelu": "jumprelu", "relu": "relu"}[cfg.arch]
    norm = "none" if scale == 1.0 else cfg.normalization
    scfg = SaeConfig(
        d_in=d_in,
        d_sae=d_sae,
        activation=activation,
        k=cfg.k if cfg.arch in ("topk", "batchtopk") else None,
        apply_b_dec_to_input=True,
        input_scale=scale,
        layer=cfg.layer,
        site=cfg.site,
        model=model_name,
        normalization=norm,
        batchtopk_inference=cfg.batchtopk_inference,
        hook_name=hook_name(cfg.layer, cfg.site),
        extra={"trainer": "steerlab", "arch": cfg.arch},
    )
    weights = {
        "W_enc": p.W_enc_t.detach().T,
        "b_enc": p.b_enc.detach(),
        "W_dec": p.W_dec.detach(),
        "b_dec": p.b_dec.detach(),
    }
    if cfg.arch == "jumprelu":
        weights["threshold"] = p.log_threshold.detach().exp()
    elif cfg.arch == "batchtopk":
        weights["threshold"] = torch.full((d_sae,), float(state.get("theta") or 0.0))
    return Sae.from_weights(scfg, weights, source=f"trained:{model_name}:{hook_name(cfg.layer, cfg.site)}")


def _measure_scale(buffer: ShufflingBuffer, cfg: TrainConfig, d_in: int) -> float:
    if cfg.normalization == "expected_average_norm":
        mean_norm = float(buffer.data.norm(dim=1).mean())
        if mean_norm <= 0:
            raise SteerlabError("The harvested activations are all zero; check the layer and site.")
        return math.sqrt(d_in) / mean_norm
    if cfg.normalization == "constant":
        return float(cfg.input_scale)
    return 1.0


def train_sae(
    model: Model,
    corpus: Corpus,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train an SAE on `corpus` (its held-out part is left untouched) and save folder, plot and metrics in out_dir."""
    from steerlab.progress import progress_bar

    model.arch.check_layer(cfg.layer)
    d_in = model.arch.site_width(cfg.site)
    d_sae = cfg.d_sae or cfg.expansion * d_in
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    train_docs, _ = corpus.split(cfg.held_out)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    p = _Params(d_in, d_sae, gen, cfg.jumprelu_init_threshold)
    lr = cfg.lr or default_lr(d_sae)
    opt = torch.optim.Adam(p.parameters(), lr=lr, betas=(0.9, 0.999), fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg))
    since_fired = torch.zeros(d_sae, dtype=torch.long)
    dead_after = cfg.dead_after_tokens or max(cfg.batch_size * 10, min(cfg.n_tokens // 5, 10_000_000))
    state: dict[str, Any] = {
        "harvested_now": 0,
        "step": 0,
        "doc": 0,
        "theta": None,
        "scale": None,
        "history": [],
        "elapsed": 0.0,
        "harvested": 0,
    }
    ckpt = out / CHECKPOINT
    saved_buffer = None
    if resume and ckpt.is_file():
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        if saved.get("config") != asdict(cfg):
            raise SteerlabError(f"{ckpt} was written by a run with other settings; delete it or pass --no-resume.")
        p.load_state_dict(saved["params"])
        opt.load_state_dict(saved["optim"])
        sched.load_state_dict(saved["sched"])
        since_fired = saved["since_fired"]
        state.update(saved["state"])
        gen.set_state(saved["gen"])
        if "torch_rng" in saved:
            torch.set_rng_state(saved["torch_rng"])
        saved_buffer = saved.get("buffer")
    start_at = tuple(state["doc"]) if isinstance(state["doc"], (list, tuple)) else int(state["doc"])

    stream = iter_activations(
        model,
        train_docs.documents,
        cfg.layer,
        cfg.site,
        context_len=cfg.context_len,
        batch_rows=cfg.harvest_rows,
        cycle=True,
        start_doc=start_at,
    )
    # closing() removes the harvest hook as soon as training stops (or fails), not at garbage collection
    with no_grad_model(model), contextlib.closing(stream) as chunks:
        doc_cursor = {"doc": start_at}

        def tracked():
            for acts, next_doc in chunks:
                doc_cursor["doc"] = next_doc
                yield acts

        t0, cpu0 = time.time(), time.process_time()
        if saved_buffer is not None:  # the exact buffer of the checkpoint: the run continues as if never stopped
            buffer = ShufflingBuffer.restore(tracked(), saved_buffer)
        else:
            buffer = ShufflingBuffer(
                tracked(),
                min(cfg.buffer_tokens, max(cfg.n_tokens, 2)),
                d_in,
                reuse=cfg.reuse,
                seed=cfg.seed + state["step"],
            )
        if state["scale"] is None:
            state["scale"] = _measure_scale(buffer, cfg, d_in)
            with torch.no_grad():
                p.b_dec.copy_(buffer.data.mean(0) * state["scale"])
        scale = state["scale"]
        with progress_bar(enabled=progress) as bar:
            task = bar.add_task(f"training {cfg.arch} SAE", total=cfg.steps, completed=state["step"], info="")
            while state["step"] < cfg.steps:
                step = state["step"]
                x = buffer.next_batch(cfg.batch_size) * scale
                dead = since_fired >= dead_after
                loss, logs, fired = _loss_step(cfg, p, x, dead, state)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                _remove_parallel_grad(p)
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(p.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                _constrain_decoder(p)
                since_fired += x.shape[0]
                since_fired[fired] = 0
                state["step"] = step + 1
                if step % cfg.log_every == 0 or state["step"] == cfg.steps:
                    logs.update(
                        step=step,
                        tokens=(step + 1) * cfg.batch_size,
                        dead_frac=float(dead.float().mean()),
                        lr=sched.get_last_lr()[0],
                    )
                    state["history"].append(logs)
                    bar.update(
                        task,
                        info=f"loss {logs['loss']:.3f} fvu {logs['fvu']:.3f} L0 {logs['l0']:.1f} dead {logs['dead_frac']:.1%}",
                    )
                    if on_log:
                        on_log(logs)
                bar.update(task, completed=state["step"])
                if cfg.checkpoint_every and state["step"] % cfg.checkpoint_every == 0 and state["step"] < cfg.steps:
                    state["doc"] = (
                        list(doc_cursor["doc"]) if isinstance(doc_cursor["doc"], tuple) else doc_cursor["doc"]
                    )
                    state["harvested_now"] = buffer.harvested
                    _save_checkpoint(
                        ckpt,
                        p,
                        opt,
                        sched,
                        since_fired,
                        state,
                        gen,
                        cfg,
                        time.time() - t0,
                        time.process_time() - cpu0,
                        buffer.state_dict(),
                    )
        state["elapsed"] = state.get("elapsed", 0.0) + time.time() - t0
        state["cpu"] = state.get("cpu", 0.0) + time.process_time() - cpu0
        state["harvested"] = state.get("harvested", 0) + buffer.harvested
    sae = _to_sae(p, cfg, d_in, d_sae, scale, model.name, state)
    folder = save_sae(sae, out / "sae")
    metrics = {
        "model": model.name,
        "hook_name": hook_name(cfg.layer, cfg.site),
        "arch": cfg.arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "steps": cfg.steps,
        "train_tokens": cfg.steps * cfg.batch_size,
        "harvested_tokens": state["harvested"],
        "lr": lr,
        "input_scale": scale,
        "train_seconds": round(state["elapsed"], 1),
        "train_cpu_seconds": round(
            state["cpu"], 1
        ),  # summed over threads; the wall time on an idle machine is about this / threads
        "final": {k: v for k, v in state["history"][-1].items()} if state["history"] else {},
        "dead_frac_train": float((since_fired >= dead_after).float().mean()),
    }
    write_json(out / "train_config.json", asdict(cfg))
    write_json(out / "history.json", state["history"], indent=None)
    write_json(out / "metrics.json", metrics)
    from steerlab.sae.plots import plot_training

    plot_training(
        state["history"], out / "training_curve.png", title=f"{model.name} {hook_name(cfg.layer, cfg.site)} {cfg.arch}"
    )
    if ckpt.is_file():
        ckpt.unlink()
    return TrainResult(sae=sae, folder=folder, metrics=metrics, history=state["history"])


def _save_checkpoint(
    path: Path,
    p,
    opt,
    sched,
    since_fired,
    state,
    gen,
    cfg: TrainConfig,
    elapsed: float,
    cpu: float,
    buffer: dict | None = None,
) -> None:
    snapshot = dict(state)
    snapshot["elapsed"] = state.get("elapsed", 0.0) + elapsed
    snapshot["cpu"] = state.get("cpu", 0.0) + cpu
    snapshot["harvested"] = state.get("harvested", 0) + snapshot.pop("harvested_now", 0)
    data = {
        "params": p.state_dict(),
        "optim": opt.state_dict(),
        "sched": sched.state_dict(),
        "since_fired": since_fired,
        "state": snapshot,
        "gen": gen.get_state(),
        "config": asdict(cfg),
        "torch_rng": torch.get_rng_state(),
        "buffer": buffer,
    }
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
