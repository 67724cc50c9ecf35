"""Ablation evaluation of a backdoor circuit: the full model, the circuit removed, a random circuit of the
same size and layer profile removed, and the circuit alone, each under zero and/or mean ablation."""

from __future__ import annotations

import time
from typing import Sequence

from steerlab.circuits.ablation import Means, circuit_interventions
from steerlab.circuits.data import BackdoorData
from steerlab.circuits.evaluate import benign_texts, lm_loss, text_loss
from steerlab.circuits.organism import measure
from steerlab.circuits.units import Circuit, random_circuit
from steerlab.models.loading import Model
from steerlab.progress import progress_bar


def _row(model: Model, data: BackdoorData, name: str, ablation: str, ivs, base: dict | None, max_new_tokens: int, text: bool = True) -> dict:
    start = time.perf_counter()
    gen = measure(model, data, ivs, max_new_tokens)
    loss = lm_loss(model, data.test_clean, ivs)
    tloss = text_loss(model, benign_texts(), ivs) if text else None
    return {
        "condition": name, "ablation": ablation, "asr": gen["asr"], "false_trigger": gen["false_trigger"],
        "clean_accuracy": gen["clean_accuracy"], "clean_loss": loss,
        "loss_change": None if base is None else (loss - base["clean_loss"]) / base["clean_loss"],
        "text_loss": tloss,
        "text_loss_change": None if base is None or tloss is None or base.get("text_loss") is None else (tloss - base["text_loss"]) / base["text_loss"],
        "seconds": round(time.perf_counter() - start, 1), "examples": gen["examples"],
    }


def evaluate_backdoor_circuit(
    model: Model, data: BackdoorData, circuit: Circuit, means: Means | None, ablations: Sequence[str] = ("mean", "zero"),
    random_seeds: Sequence[int] = (0,), circuit_alone: bool = False, max_new_tokens: int = 16, progress: bool = True,
) -> list[dict]:
    """Rows of ASR / false-trigger / task accuracy / clean LM loss per condition (loss change vs the full model)."""
    circuit.check_model(model)
    plan: list[tuple[str, str, Circuit | None, str]] = [("full model", "none", None, "removed")]
    for ab in ablations:
        plan.append(("circuit removed", ab, circuit, "removed"))
        plan += [(f"random circuit removed (seed {s})", ab, random_circuit(circuit, s), "removed") for s in random_seeds]
        if circuit_alone:
            plan.append(("circuit alone", ab, circuit, "circuit"))
    rows: list[dict] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("ablation", total=len(plan), info="")
        for name, ab, c, view in plan:
            ivs = [] if c is None else circuit_interventions(model, c, view, ab, means)
            rows.append(_row(model, data, name, ab, ivs, rows[0] if rows else None, max_new_tokens))
            bar.update(task, advance=1, info=f"{name} ({ab}): ASR {rows[-1]['asr']:.0%}")
    return rows


def sweep_sizes(
    model: Model, data: BackdoorData, masks, base: Circuit, scales: Sequence[float], means: Means | None, ablation: str = "mean",
    random_seed: int = 0, max_new_tokens: int = 16, progress: bool = True,
) -> list[dict]:
    """Sparsity vs faithfulness: circuits of scale × the found size (top-k of the same mask logits), removed,
    each next to a random circuit of the same profile; ASR and clean-loss change per size."""
    layers = base.meta.get("searched_layers")
    targets = base.meta.get("targets") or {k: base.fraction(k) for k in ("head", "neuron")}
    base = {"clean_loss": lm_loss(model, data.test_clean)}
    out: list[dict] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("sweep", total=len(scales), info="")
        for scale in scales:
            fractions = {k: min(0.99, v * scale) for k, v in targets.items() if k in masks.logits}
            c = masks.extract(model, fractions, layers=layers)
            r = _row(model, data, "circuit removed", ablation, circuit_interventions(model, c, "removed", ablation, means), base, max_new_tokens, text=False)
            rr = _row(model, data, "random removed", ablation, circuit_interventions(model, random_circuit(c, random_seed), "removed", ablation, means), base, max_new_tokens, text=False)
            out.append({"scale": scale, "fraction": c.fraction(), "heads": c.count("head"), "neurons": c.count("neuron"), "asr": r["asr"],
                        "false_trigger": r["false_trigger"], "loss_change": r["loss_change"], "random_asr": rr["asr"], "random_loss_change": rr["loss_change"]})
            bar.update(task, advance=1, info=f"{c.fraction():.2%}: ASR {r['asr']:.0%}")
    return out
