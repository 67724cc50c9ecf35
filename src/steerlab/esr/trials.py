"""Trials of an ESR run: which (condition, latent, strength, prompt, seed) rows exist, and their interventions.

Every condition reuses the same (latent, prompt, seed) triples, so conditions compare pairwise.
Seeds derive from the run seed and the triple, never from global random state.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from typing import Sequence

import torch

from steerlab.esr.config import EsrConfig, meta_prompt
from steerlab.interventions import ClampLatents, SteerLatent
from steerlab.interventions.specs import Intervention
from steerlab.sae import Sae
from steerlab.store import Trial


def stable_int(*parts: object, modulo: int = 1_000_000) -> int:
    """A deterministic integer from any parts (process- and platform-independent)."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16) % modulo


def prompt_indices(cfg: EsrConfig, latent: int, n_prompts: int) -> list[int]:
    """The prompts one latent is tried on: drawn without replacement, seeded by (run seed, latent)."""
    return random.Random(stable_int(cfg.seed, "prompts", latent)).sample(range(n_prompts), cfg.prompts_per_latent)


def boost_strengths(thresholds: dict[int, float], levels: Sequence[float]) -> dict[float, float]:
    """Global boost levels μ + level·σ of the calibrated thresholds (population σ), clamped at 0."""
    values = list(thresholds.values())
    mu = sum(values) / len(values)
    sigma = (sum((v - mu) ** 2 for v in values) / len(values)) ** 0.5
    return {lvl: round(max(0.0, mu + lvl * sigma), 4) for lvl in levels}


def build_trials(
    cfg: EsrConfig,
    prompts: Sequence[str],
    labels: dict[int, str],
    thresholds: dict[int, float],
    detectors: Sequence[int] = (),
    random_sets: Sequence[Sequence[int]] = (),
) -> list[Trial]:
    """Every trial of every configured condition, in a fixed order (latent, prompt, seed, condition)."""
    boosts = boost_strengths(thresholds, cfg.boost_levels) if any(c.startswith("boost") for c in cfg.conditions) else {}
    scales = cfg.scale_levels
    out: list[Trial] = []
    for latent, thr in thresholds.items():
        label = labels.get(latent, f"latent {latent}")
        for j in prompt_indices(cfg, latent, len(prompts)):
            task = prompts[j]
            for rep in range(cfg.seeds_per_prompt):
                seed = stable_int(cfg.seed, "trial", latent, j, rep)
                extra = {"task": task, "prompt_index": j, "rep": rep}
                for cond in cfg.conditions:
                    kind, _, arg = cond.partition(":")
                    if kind == "steered":
                        out.append(Trial("steered", task, seed, latent, thr, label, extra))
                    elif kind == "baseline":
                        out.append(Trial("baseline", task, seed, latent, 0.0, label, extra))
                    elif kind == "meta":
                        out.append(Trial(cond, meta_prompt(arg, task, label), seed, latent, thr, label, extra))
                    elif kind == "ablate" and detectors:
                        out.append(
                            Trial("ablate", task, seed, latent, thr, label, {**extra, "ablate": list(detectors)})
                        )
                    elif kind == "random":
                        for i, latents in enumerate(random_sets):
                            out.append(
                                Trial(f"random:{i}", task, seed, latent, thr, label, {**extra, "ablate": list(latents)})
                            )
                    elif kind == "scale":  # per-latent multiples of each latent's own threshold
                        for mult in scales:
                            out.append(
                                Trial(
                                    f"scale:{mult:g}",
                                    task,
                                    seed,
                                    latent,
                                    round(thr * mult, 4),
                                    label,
                                    {**extra, "multiple": mult, "threshold": thr},
                                )
                            )
                    elif kind == "boost":
                        for lvl, b in boosts.items():
                            out.append(
                                Trial(
                                    f"boost:{lvl:+g}",
                                    task,
                                    seed,
                                    latent,
                                    b,
                                    label,
                                    {**extra, "level": lvl, "threshold": thr},
                                )
                            )
    return out


def sae_at_layer(sae: Sae, layer: int | None) -> Sae:
    """The same SAE applied at another layer (the original code's ablation at the steering layer)."""
    if layer is None or layer == sae.layer:
        return sae
    moved = Sae(replace(sae.cfg, layer=layer), source=f"{sae.source}@layer{layer}")
    moved.load_state_dict(sae.state_dict())
    return moved


def batch_interventions(
    trials: Sequence[Trial], sae: Sae, steer_layer: int | None, ablation_sae: Sae
) -> list[Intervention]:
    """One batched SteerLatent (each row its own latent and strength; 0 = unsteered) plus per-row zero-clamps."""
    latents = torch.tensor([t.latent if t.latent is not None else 0 for t in trials], dtype=torch.long)
    strengths = torch.tensor([t.strength or 0.0 for t in trials], dtype=torch.float32)
    ivs: list[Intervention] = [SteerLatent(sae, latent=latents, strength=strengths, layer=steer_layer)]
    ablate = [tuple(int(x) for x in t.extra.get("ablate", ())) for t in trials]
    if any(ablate):
        ivs.append(ClampLatents(ablation_sae, latents=tuple(ablate), value=0.0))
    return ivs


def ablation_sae_for(cfg: EsrConfig, sae: Sae) -> Sae:
    """The SAE whose latents a trial's `ablate` list zero-clamps: at the steering layer or the SAE's own (cfg)."""
    layer = cfg.steer_layer if cfg.steer_layer is not None else sae.layer
    return sae_at_layer(sae, layer if cfg.ablation_layer == "steering" else None)


def trial_interventions(
    cfg: EsrConfig, sae: Sae, trials: Sequence[Trial], ablation: Sae | None = None
) -> list[Intervention]:
    """The interventions of one batch of trials, for any backend: each row's steering plus its ablation.

    ablation: the SAE that zero-clamps the `ablate` latents (default: the run's, `ablation_sae_for(cfg, sae)`).
    """
    return batch_interventions(
        trials, sae, cfg.steer_layer, ablation_sae_for(cfg, sae) if ablation is None else ablation
    )
