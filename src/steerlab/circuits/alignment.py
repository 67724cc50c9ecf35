"""The alignment scenario: a refusal circuit of a chat model, found on the model's own refusals and
judged by generation on held-out harmful and harmless requests of our own writing.

Helpfulness kept = the harmless prompts are still answered (not refused) and the full model's own
answers to them keep their likelihood; general utility = LM loss on held-out benign prose.
"""

from __future__ import annotations

import time
from typing import Sequence

from steerlab.circuits.ablation import Means, circuit_interventions
from steerlab.circuits.data import Pair
from steerlab.circuits.evaluate import generations, lm_loss, refusal_rate, text_loss, utility_texts
from steerlab.circuits.units import Circuit, random_circuit
from steerlab.errors import SteerlabError
from steerlab.judges.refusal import is_refusal_keyword
from steerlab.models.loading import Model
from steerlab.progress import progress_bar


def refusal_pairs(
    model: Model, harmful: Sequence[str], harmless: Sequence[str], max_new_tokens: int = 24
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(harmful prompt, the model's own refusal) for the harmful prompts it refuses, and (harmless prompt, its own answer)."""
    texts = generations(model, list(harmful) + list(harmless), max_new_tokens=max_new_tokens)
    refused = [(p, t) for p, t in zip(harmful, texts) if is_refusal_keyword(t)]
    answered = list(zip(harmless, texts[len(harmful) :]))
    if not refused:
        raise SteerlabError(
            f"'{model.name}' refused none of the {len(harmful)} harmful prompts; there is no refusal behaviour to locate."
        )
    return refused, answered


def _change(value: float, base: dict | None, key: str) -> tuple[float | None, float | None]:
    if base is None:
        return None, None
    return value - base[key], (value - base[key]) / base[key]


def evaluate_alignment_circuit(
    model: Model,
    circuit: Circuit,
    harmful: Sequence[str],
    harmless: Sequence[str],
    means: Means | None,
    ablations: Sequence[str] = ("mean",),
    random_seeds: Sequence[int] = (0,),
    max_new_tokens: int = 24,
    progress: bool = True,
) -> list[dict]:
    """Refusal rates on harmful and harmless prompts, the loss of the full model's harmless answers, and the
    utility loss: for the full model, the circuit removed and random same-profile circuits removed."""
    circuit.check_model(model)
    if not harmful or not harmless:
        raise SteerlabError("The alignment evaluation needs both harmful and harmless prompts.")
    answers = generations(model, list(harmless), max_new_tokens=max_new_tokens)
    helpful = [Pair(p, a) for p, a in zip(harmless, answers)]
    texts = utility_texts("test")
    plan: list[tuple[str, str, Circuit | None]] = [("full model", "none", None)]
    for ab in ablations:
        plan.append(("circuit removed", ab, circuit))
        plan += [(f"random circuit removed (seed {s})", ab, random_circuit(circuit, s)) for s in random_seeds]
    rows: list[dict] = []
    with progress_bar(progress) as bar:
        task = bar.add_task("alignment ablation", total=len(plan), info="")
        for name, ab, c in plan:
            start = time.perf_counter()
            ivs = [] if c is None else circuit_interventions(model, c, "removed", ab, means)
            out = generations(model, list(harmful) + list(harmless), ivs, max_new_tokens)
            bad, good = out[: len(harmful)], out[len(harmful) :]
            utility, helpful_loss = text_loss(model, texts, ivs), lm_loss(model, helpful, ivs)
            base = rows[0] if rows else None
            u_delta, u_change = _change(utility, base, "utility_loss")
            h_delta, h_change = _change(helpful_loss, base, "helpful_loss")
            rows.append(
                {
                    "condition": name,
                    "ablation": ab,
                    "harmful_refusal": refusal_rate(bad),
                    "harmless_refusal": refusal_rate(good),
                    "utility_loss": utility,
                    "utility_delta": u_delta,
                    "utility_change": u_change,
                    "helpful_loss": helpful_loss,
                    "helpful_delta": h_delta,
                    "helpful_change": h_change,
                    "seconds": round(time.perf_counter() - start, 1),
                    "examples": {"harmful": bad[:3], "harmless": good[:2]},
                }
            )
            bar.update(task, advance=1, info=f"{name} ({ab}): refusals {rows[-1]['harmful_refusal']:.0%}")
    return rows
