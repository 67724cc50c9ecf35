"""Persona vectors: the mean difference of the residual stream between a persona organism and its base on
the same tokens, at one layer or at each layer a LoRA touches, and steering along them with the strength
split across the layers.

Steering strength s at layer l adds s × (median residual norm at l) × unit(v_l) at every position; with
`split`, each of the n layers gets s / n of that, so the total added norm stays comparable with one layer.
A random control uses seeded random unit directions at the same layers and strengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from steerlab.engine.generate import generate
from steerlab.errors import SteerlabError
from steerlab.interventions.specs import AddVector
from steerlab.models.loading import Model
from steerlab.persona.diff import _resolve_responses, response_activations_by_layer
from steerlab.persona.validate import PersonaRater, Validation, _summarise, median_residual_norm, random_direction
from steerlab.progress import progress_bar


def persona_vectors(
    base: Model,
    tuned: Model,
    prompts: Sequence[str],
    layers: Sequence[int],
    *,
    site: str = "resid_post",
    max_new_tokens: int = 40,
    own: bool = False,
    chat: bool | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> dict[int, torch.Tensor]:
    """Per layer: mean over response tokens of the tuned model's activations minus the base's.

    Args:
        own: False (default) reads both models on the base model's greedy answers (the same tokens);
            True reads each model on its own answers.
        progress: show a bar over the answers generated and the rows read (both models, every layer at once).
    Returns:
        layer -> the (unnormalised) mean-difference vector.
    """
    if not prompts:
        raise SteerlabError("The prompt set is empty; give at least one prompt.")
    if base.arch.n_layers != tuned.arch.n_layers or base.arch.d_model != tuned.arch.d_model:
        raise SteerlabError(
            f"'{tuned.name}' does not have the shape of '{base.name}'; a persona vector needs an organism of the same base."
        )
    for layer in layers:
        base.arch.check_layer(layer)
    prompt_ids = [base.encode(p, chat=chat) for p in prompts]
    base_ids, _ = _resolve_responses(base, list(prompts), None, max_new_tokens, chat, batch_size, progress)
    tuned_ids = (
        _resolve_responses(tuned, list(prompts), None, max_new_tokens, chat, batch_size, progress)[0]
        if own
        else base_ids
    )
    with progress_bar(progress) as bar:
        task = bar.add_task(f"reading layers {list(layers)} of both models", total=2 * len(prompts), info="")
        step = lambda n: bar.advance(task, n)  # noqa: E731
        tuned_acts = response_activations_by_layer(tuned, prompt_ids, tuned_ids, layers, site, batch_size, step)
        base_acts = response_activations_by_layer(base, prompt_ids, base_ids, layers, site, batch_size, step)
    return {
        int(layer): torch.cat(tuned_acts[int(layer)]).float().mean(0) - torch.cat(base_acts[int(layer)]).float().mean(0)
        for layer in layers
    }


@dataclass
class LayeredValidation:
    """A steering curve for one direction set (persona vector or random) at one or several layers."""

    direction: str
    layers: list[int]
    split: bool
    median_norms: dict[int, float]
    curve: Validation


def layered_sweep(
    model: Model,
    directions: dict[int, torch.Tensor],
    strengths: Sequence[float],
    prompts: Sequence[str],
    judge: PersonaRater,
    *,
    split: bool = True,
    label: str = "persona",
    site: str = "resid_post",
    max_new_tokens: int = 40,
    chat: bool | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> LayeredValidation:
    """Steer along unit(direction_l) at every given layer at once (strength split across them) and grade every answer."""
    if not directions:
        raise SteerlabError("Give at least one layer's direction to steer along.")
    if not strengths:
        raise SteerlabError("Give at least one steering strength (in units of the median residual norm).")
    prompts = list(prompts)
    if not prompts:
        raise SteerlabError("The prompt set is empty; give at least one prompt.")
    norms = {layer: median_residual_norm(model, prompts, layer, site, chat=chat) for layer in directions}
    share = 1.0 / len(directions) if split else 1.0
    rows = [(s, p) for s in strengths for p in prompts]
    ivs = []
    for layer, v in directions.items():
        if not torch.isfinite(v).all() or float(v.norm()) == 0.0:
            raise SteerlabError(
                f"The direction at layer {layer} is zero or not finite; the two models do not differ there."
            )
        per_row = torch.tensor([float(s) * norms[layer] * share for s, _ in rows])
        ivs.append(
            AddVector(
                layer=layer,
                vector=(v / v.norm()).float(),
                strength=per_row,
                site=site,
                positions="all",
                label=f"{label}:{layer}",
            )
        )
    gens = generate(
        model,
        [p for _, p in rows],
        ivs,
        max_new_tokens=max_new_tokens,
        chat=chat,
        batch_size=batch_size,
        progress=progress,
    )
    grades = judge.rate_many([(p, g.text) for (_, p), g in zip(rows, gens)])
    per, points = len(prompts), []
    mean_norm = sum(norms.values()) / len(norms)
    for k, s in enumerate(strengths):
        chunk = slice(k * per, (k + 1) * per)
        points.append(_summarise(float(s), float(s) * mean_norm, grades[chunk], [g.text for g in gens[chunk]]))
    layers = sorted(directions)
    curve = Validation(
        latent=-1,
        layer=layers[0],
        site=site,
        model=model.name,
        median_norm=mean_norm,
        points=points,
        judge=str(getattr(judge, "judge_id", type(judge).__name__)),
    )
    return LayeredValidation(label, layers, split, norms, curve)


def random_directions(model: Model, layers: Sequence[int], seed: int = 0) -> dict[int, torch.Tensor]:
    """Seeded random unit directions, one per layer (the control for a persona vector)."""
    return {int(layer): random_direction(model.arch.d_model, seed + i) for i, layer in enumerate(layers)}


def vector_cosines(vectors: dict[int, torch.Tensor], sae) -> dict[int, dict]:
    """Per layer at the SAE's layer: the largest |cosine| of the persona vector with a decoder row, and that latent."""
    out = {}
    if sae is None or sae.layer not in vectors:
        return out
    v = vectors[sae.layer]
    w = torch.nn.functional.normalize(sae.W_dec.detach().float(), dim=-1)
    cos = w @ (v / v.norm())
    i = int(cos.abs().argmax())
    out[sae.layer] = {"max_abs_cosine": float(cos.abs().max()), "latent": i, "cosine": float(cos[i])}
    return out


def run_vector_study(
    base: Model,
    tuned: Model,
    prompts: Sequence[str],
    layer_sets: Sequence[Sequence[int]],
    strengths: Sequence[float],
    judge: PersonaRater,
    *,
    mode: str = "induce",
    split: bool = True,
    own: bool = False,
    sae=None,
    max_new_tokens: int = 40,
    max_incoherence: float = 0.1,
    random_seed: int = 0,
    out=None,
    progress: bool = False,
) -> dict:
    """For each layer set: the persona vector and a random control steered on the base (induce, +s) or the organism
    (repair, −s); rows hold each curve's best in-budget misaligned rate (the highest when inducing, the lowest when
    repairing) with its Wilson interval and the random direction's rate at that strength. Writes out/vector.json."""
    from pathlib import Path

    from steerlab.paths import write_json
    from steerlab.persona.emergent import wilson

    if mode not in ("induce", "repair"):
        raise SteerlabError(f"Unknown mode '{mode}'; choose induce or repair.")
    layers = sorted({int(layer) for s in layer_sets for layer in s})
    vectors = persona_vectors(base, tuned, prompts, layers, max_new_tokens=max_new_tokens, own=own, progress=progress)
    steered = base if mode == "induce" else tuned
    signed = [float(s) if mode == "induce" else -float(s) for s in strengths]
    rows = []
    for layer_set in layer_sets:
        curves = {
            name: layered_sweep(
                steered,
                dirs,
                signed,
                prompts,
                judge,
                split=split,
                label=name,
                max_new_tokens=max_new_tokens,
                progress=progress,
            )
            for name, dirs in (
                ("persona vector", {layer: vectors[layer] for layer in layer_set}),
                ("random", random_directions(base, layer_set, random_seed)),
            )
        }
        for name, lv in curves.items():
            best = lv.curve.best(max_incoherence, lowest=mode == "repair")
            zero = next((p for p in lv.curve.points if p.strength == 0), None)
            best_d = None
            if best is not None:
                k = round((best.misalignment_rate or 0.0) * best.n_rated)
                control = next((p for p in curves["random"].curve.points if p.strength == best.strength), None)
                best_d = {
                    "strength": best.strength,
                    "misalignment_rate": best.misalignment_rate,
                    "n_rated": best.n_rated,
                    "ci": list(wilson(k, best.n_rated)),
                    "incoherent_rate": best.incoherent_rate,
                    "random_at_strength": None if control is None else control.misalignment_rate,
                }
            rows.append(
                {
                    "direction": name,
                    "layers": list(layer_set),
                    "split": split,
                    "best": best_d,
                    "at_zero": None if zero is None else zero.misalignment_rate,
                    "curve": lv.curve.to_dict(),
                    "median_norms": lv.median_norms,
                }
            )
    result = {
        "mode": mode,
        "base": base.name,
        "organism": tuned.name,
        "prompts": list(prompts),
        "strengths": signed,
        "own_answers": own,
        "vector_norms": {layer: float(v.norm()) for layer, v in vectors.items()},
        "sae_cosines": vector_cosines(vectors, sae),
        "max_incoherence": max_incoherence,
        "rows": rows,
    }
    if out is not None:
        write_json(Path(out) / "vector.json", result, indent=1)
    return result
