"""Ablation evaluation of a backdoor circuit: the full model, the circuit removed, a random circuit of the
same size and layer profile removed, and the circuit alone, each under zero and/or mean ablation.

Utility is the LM loss on held-out benign prose (`utility_texts`), reported in nats and relative to the
full model. The loss on the organism's own clean replies is kept as a second figure, but its base is
tiny (the organism was trained on those reply templates), so its relative change overstates damage.
A size sweep is scored on the validation split and picks the circuit size there (spec §7), so the
test split stays untouched for the final figures.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from steerlab.circuits.ablation import Means, circuit_interventions
from steerlab.circuits.data import BackdoorData
from steerlab.circuits.evaluate import lm_loss, text_loss, utility_texts
from steerlab.circuits.organism import measure
from steerlab.circuits.safeseek import channel_masks, circuit_gates, is_safeseek
from steerlab.circuits.units import Circuit, random_circuit
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.progress import progress_bar


@contextmanager
def ablated(model: Model, circuit: Circuit | None, view: str, ablation: str, means: Means | None) -> Iterator[list]:
    """The interventions (and, for SafeSeek circuits, the channel hooks) that remove a circuit or keep only it."""
    if circuit is None:
        yield []
    elif is_safeseek(circuit):
        if ablation != "zero":
            raise SteerlabError(
                f"SafeSeek circuits are zero-ablated, as in SafeSeek; '{ablation}' ablation is not defined for their units."
            )
        with channel_masks(model, circuit_gates(circuit, view)) as ivs:
            yield ivs
    else:
        yield circuit_interventions(model, circuit, view, ablation, means)


def _change(value: float, base: dict | None, key: str) -> tuple[float | None, float | None]:
    """(absolute, relative) change of value against base[key]."""
    if base is None or base.get(key) is None:
        return None, None
    return value - base[key], (value - base[key]) / base[key]


def _row(
    model: Model,
    data: BackdoorData,
    name: str,
    ablation: str,
    ivs,
    base: dict | None,
    max_new_tokens: int,
    split: str = "test",
    n_texts: int = 24,
) -> dict:
    start = time.perf_counter()
    gen = measure(model, data, ivs, max_new_tokens, split)
    reply = lm_loss(model, data.test_clean if split == "test" else data.val_clean, ivs)
    utility = text_loss(model, utility_texts(split, n_texts), ivs)
    reply_delta, reply_change = _change(reply, base, "reply_loss")
    utility_delta, utility_change = _change(utility, base, "utility_loss")
    return {
        "condition": name,
        "ablation": ablation,
        "split": split,
        "asr": gen["asr"],
        "false_trigger": gen["false_trigger"],
        "clean_accuracy": gen["clean_accuracy"],
        "utility_loss": utility,
        "utility_delta": utility_delta,
        "utility_change": utility_change,
        "reply_loss": reply,
        "reply_delta": reply_delta,
        "reply_change": reply_change,
        "seconds": round(time.perf_counter() - start, 1),
        "examples": gen["examples"],
    }


def evaluate_backdoor_circuit(
    model: Model,
    data: BackdoorData,
    circuit: Circuit,
    means: Means | None,
    ablations: Sequence[str] = ("mean", "zero"),
    random_seeds: Sequence[int] = (0,),
    circuit_alone: bool = False,
    max_new_tokens: int = 16,
    progress: bool = True,
    n_texts: int = 24,
) -> list[dict]:
    """Rows of ASR / false-trigger / task accuracy / utility and reply loss per condition (changes vs the full model), test split."""
    circuit.check_model(model)
    plan: list[tuple[str, str, Circuit | None, str]] = [("full model", "none", None, "removed")]
    for ab in ablations:
        plan.append(("circuit removed", ab, circuit, "removed"))
        plan += [
            (f"random circuit removed (seed {s})", ab, random_circuit(circuit, s), "removed") for s in random_seeds
        ]
        if circuit_alone:
            plan.append(("circuit alone", ab, circuit, "circuit"))
    rows: list[dict] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("ablation", total=len(plan), info="")
        for name, ab, c, view in plan:
            with ablated(model, c, view, ab, means) as ivs:
                rows.append(
                    _row(model, data, name, ab, ivs, rows[0] if rows else None, max_new_tokens, n_texts=n_texts)
                )
            bar.update(task, advance=1, info=f"{name} ({ab}): ASR {rows[-1]['asr']:.0%}")
    return rows


def sweep_sizes(
    model: Model,
    data: BackdoorData,
    masks,
    base: Circuit,
    scales: Sequence[float],
    means: Means | None,
    ablation: str = "mean",
    random_seed: int | None = 0,
    max_new_tokens: int = 16,
    progress: bool = True,
    n_texts: int = 24,
) -> tuple[list[dict], list[Circuit]]:
    """Sparsity vs faithfulness on the validation split: circuits of scale × the found size (top-k of the same
    mask logits) removed, each next to a random circuit of the same profile. Returns the points and circuits."""
    if not data.val_clean:
        raise SteerlabError(
            "The sweep scores sizes on validation pairs, and this organism has none; build it with fewer training pairs."
        )
    layers = base.meta.get("searched_layers")
    targets = base.meta.get("targets") or {k: base.fraction(k) for k in ("head", "neuron")}
    full = _row(model, data, "full model", "none", [], None, max_new_tokens, "val", n_texts)
    out: list[dict] = []
    circuits: list[Circuit] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("sweep (val)", total=len(scales), info="")
        for scale in scales:
            fractions = {k: min(0.99, v * scale) for k, v in targets.items() if k in masks.logits}
            c = masks.extract(model, fractions, layers=layers, **(base.meta | {"scale": scale}))
            r = _row(
                model,
                data,
                "circuit removed",
                ablation,
                circuit_interventions(model, c, "removed", ablation, means),
                full,
                max_new_tokens,
                "val",
                n_texts,
            )
            point = {
                "scale": scale,
                "fraction": c.fraction(),
                "heads": c.count("head"),
                "neurons": c.count("neuron"),
                "asr": r["asr"],
                "false_trigger": r["false_trigger"],
                "utility_loss": r["utility_loss"],
                "utility_change": r["utility_change"],
                "reply_change": r["reply_change"],
            }
            if random_seed is not None:
                rr = _row(
                    model,
                    data,
                    "random removed",
                    ablation,
                    circuit_interventions(model, random_circuit(c, random_seed), "removed", ablation, means),
                    full,
                    max_new_tokens,
                    "val",
                    n_texts,
                )
                point |= {"random_asr": rr["asr"], "random_utility_change": rr["utility_change"]}
            out.append(point)
            circuits.append(c)
            bar.update(
                task, advance=1, info=f"{c.fraction():.2%}: ASR {r['asr']:.0%}, utility {r['utility_change']:+.1%}"
            )
    for p in out:
        p["base_asr"], p["base_utility_loss"] = full["asr"], full["utility_loss"]
    return out, circuits


def select_size(points: Sequence[dict], max_asr: float = 0.1) -> int:
    """Index of the sweep point to keep: among sizes whose validation ASR is at most max_asr, the one that
    costs the least utility (ties: the smaller circuit)."""
    ok = [i for i, p in enumerate(points) if p["asr"] <= max_asr]
    if not ok:
        raise SteerlabError(
            f"No swept size brings the validation ASR to {max_asr:.0%} or below; sweep larger scales or train the masks longer."
        )
    return min(ok, key=lambda i: (points[i]["utility_change"], points[i]["fraction"]))
