"""Safety Circuit Tuning for the alignment scenario: fine-tune a refusing model for helpfulness on benign
chat data with its refusal circuit frozen, against the same tuning with a random same-profile set frozen
and with nothing frozen.

Each condition starts from a fresh copy of the model, trains every projection entry not owned by its
frozen set (full weights, `tune_circuit(mode="exclude")`, frozen entries checked bit-identical), then
measures refusals on held-out harmful requests, refusals on held-out harmless ones and the loss of the
held-out helpful answers of the data file. Refusal retention = harmful refusal after / before.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

from steerlab.circuits.data import Pair, harmful_prompts, harmless_prompts
from steerlab.circuits.evaluate import generations, lm_loss, refusal_rate
from steerlab.circuits.tune import tune_circuit
from steerlab.circuits.units import Circuit, random_circuit
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model


def empty_like(circuit: Circuit) -> Circuit:
    """A circuit with no units (freezes nothing) on the same model."""
    return Circuit(
        dict(circuit.signature),
        {k: {} for k in circuit.kinds()},
        circuit.parameterisation,
        circuit.ablation,
        {"control": "none"},
    )


def split_pairs(
    pairs: Sequence[tuple[str, str]], held_out: float = 0.2
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out) in file order; at least one held-out pair and one training pair."""
    if len(pairs) < 2:
        raise SteerlabError(
            f"Helpfulness tuning needs at least 2 chat rows (train and held-out); the file has {len(pairs)}."
        )
    n_test = min(len(pairs) - 1, max(1, round(len(pairs) * held_out)))
    return list(pairs[:-n_test]), list(pairs[-n_test:])


def measure_alignment(model: Model, helpful: Sequence[tuple[str, str]], max_new_tokens: int = 24) -> dict:
    """Refusals on held-out harmful and harmless requests, and the loss of held-out helpful answers."""
    harmful, harmless = harmful_prompts("test"), harmless_prompts("test")
    out = generations(model, harmful + harmless, max_new_tokens=max_new_tokens)
    return {
        "harmful_refusal": refusal_rate(out[: len(harmful)]),
        "harmless_refusal": refusal_rate(out[len(harmful) :]),
        "helpful_loss": lm_loss(model, [Pair(p, r) for p, r in helpful]),
        "examples": {"harmful": out[:2], "harmless": out[len(harmful) : len(harmful) + 2]},
    }


def tune_alignment(
    model: Model,
    circuit: Circuit,
    pairs: Sequence[tuple[str, str]],
    steps: int = 30,
    lr: float = 3e-5,
    batch_size: int = 8,
    random_seed: int = 0,
    controls: Sequence[str] = ("circuit", "random", "none"),
    progress: bool = True,
) -> dict:
    """Helpfulness tuning with the circuit frozen vs a random same-profile set frozen vs nothing frozen.

    Args:
        model: the refusing model (left unchanged: each condition tunes a deep copy).
        pairs: benign (prompt, helpful answer) pairs; the last 20% are held out for the helpfulness figure.
    Returns:
        {"before": figures, "rows": [per condition: frozen units, after figures, retention, helpfulness gain]}.
    """
    circuit.check_model(model)
    train, held = split_pairs(pairs)
    before = measure_alignment(model, held)
    frozen_sets = {"circuit": circuit, "random": random_circuit(circuit, random_seed), "none": empty_like(circuit)}
    unknown = set(controls) - set(frozen_sets)
    if unknown:
        raise SteerlabError(f"Unknown SCT condition(s) {sorted(unknown)}; use circuit, random, none.")
    rows = []
    for name in controls:
        frozen = frozen_sets[name]
        tuned = copy.deepcopy(model)
        start = time.perf_counter()
        report = tune_circuit(tuned, frozen, train, "exclude", steps, lr, batch_size, progress=progress)
        after = measure_alignment(tuned, held)
        retention = after["harmful_refusal"] / before["harmful_refusal"] if before["harmful_refusal"] > 0 else None
        rows.append(
            {
                "condition": f"{name} frozen",
                "frozen_units": sum(frozen.count(k) for k in frozen.kinds()),
                "trainable_entries": report.trainable_entries,
                "frozen_changed": report.frozen_changed,
                "final_loss": report.final_loss,
                **{k: v for k, v in after.items()},
                "refusal_retention": retention,
                "helpful_loss_change": after["helpful_loss"] - before["helpful_loss"],
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        del tuned
    return {
        "before": before,
        "train_pairs": len(train),
        "held_out_pairs": len(held),
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "rows": rows,
    }
