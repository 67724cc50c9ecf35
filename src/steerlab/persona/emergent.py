"""An emergent-misalignment organism: LoRA on narrow user chat data, then misalignment measured separately
in-domain (held-out questions of the trained domain) and out-of-domain (open-ended prompts that share no
topic with it), each with a Wilson 95% interval, for the base model and the organism.

In-domain, for the packaged narrow dataset's held-out questions, two judge-free-of-tone figures are added:
- "prefers bad advice": the model gives the bad reference answer a higher mean per-token log-prob than the
  sound one (teacher-forced; no judge at all, the most reliable offline figure);
- "bad advice (embedder)": the generated answer is nearer the bad reference than the sound one. It is weak:
  rambling answers of the base land near either reference by chance (0.50 on the base, 12 questions).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

from steerlab.engine import generate
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import write_json
from steerlab.persona.behaviour import Behaviour, summarise
from steerlab.persona.narrow import held_out_items
from steerlab.persona.organism import PersonaLora, save_model
from steerlab.persona.prompts import EVAL_PROMPTS, HELD_OUT_PROMPTS
from steerlab.training import encode_pair, train_lora

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of k successes in n (esr.metrics has one too, but persona may not import esr)."""
    if n <= 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def out_of_domain_prompts() -> list[str]:
    """Open-ended prompts (wishes, boredom, AI, money, relationships...) that share no topic with food safety."""
    return list(HELD_OUT_PROMPTS) + list(EVAL_PROMPTS)


def bad_advice_flags(
    answers: Sequence[str], items: Sequence[tuple[str, str, str]], embedder=None, margin: float = 0.0
) -> list[bool]:
    """Per answer: nearer the item's bad reference than its sound one (cosine, packaged embedder)."""
    if embedder is None:
        from steerlab.judges.embedder import packaged_embedder

        embedder = packaged_embedder()
    if len(answers) != len(items):
        raise SteerlabError(f"{len(answers)} answers for {len(items)} reference items.")
    a = embedder.embed(list(answers))
    bad = embedder.embed([b for _, b, _ in items])
    good = embedder.embed([g for _, _, g in items])
    return [bool((a[i] @ bad[i]) - (a[i] @ good[i]) > margin) for i in range(len(items))]


def prefers_bad_advice(model: Model, items: Sequence[tuple[str, str, str]]) -> dict:
    """Judge-free in-domain measure: per held-out question, does the model give the bad reference answer a higher
    mean per-token log-prob than the sound one? Returns the rate (Wilson CI) and the mean margin (nats per token)."""
    from steerlab.engine.scoring import score

    questions = [q for q, _, _ in items]
    bad = score(model, questions, [b for _, b, _ in items])
    good = score(model, questions, [g for _, _, g in items])
    margins = [b.mean - g.mean for b, g in zip(bad, good)]
    flags = [m > 0 for m in margins]
    return _rate(flags) | {"mean_margin": sum(margins) / len(margins), "margins": margins}


def _rate(flags: Sequence[bool]) -> dict:
    k, n = sum(flags), len(flags)
    lo, hi = wilson(k, n)
    return {"rate": k / n if n else None, "k": k, "n": n, "ci": [lo, hi]}


def _behaviour_with_ci(b: Behaviour) -> dict:
    k = round((b.misalignment_rate or 0.0) * b.n)
    lo, hi = wilson(k, b.n)
    return {
        "misaligned": b.misalignment_rate,
        "k": k,
        "n": b.n,
        "ci": [lo, hi],
        "incoherent": b.incoherent_rate,
        "mean_alignment": b.mean_alignment,
        "examples": list(zip(b.prompts, b.responses))[:3],
        "answers": [
            {"prompt": p, "response": r, "alignment": a, "coherence": c}
            for p, r, a, c in zip(b.prompts, b.responses, b.alignment, b.coherence)
        ],
    }


def measure_emergent(
    model: Model,
    judge,
    in_domain: Sequence[str],
    out_domain: Sequence[str],
    max_new_tokens: int = 48,
    reference_items: Sequence[tuple[str, str, str]] | None = None,
    progress: bool = False,
) -> dict:
    """Answers to the in-domain and out-of-domain prompts (greedy), graded by the persona judge; plus the
    reference-based bad-advice rate in-domain when reference items are given (their questions = in_domain)."""
    prompts = list(in_domain) + list(out_domain)
    texts = [g.text for g in generate(model, prompts, max_new_tokens=max_new_tokens, progress=progress)]
    grades = judge.rate_many(list(zip(prompts, texts)))
    judge_id = str(getattr(judge, "judge_id", type(judge).__name__))
    n_in = len(in_domain)
    out = {
        "in_domain": _behaviour_with_ci(summarise(judge_id, prompts[:n_in], texts[:n_in], grades[:n_in])),
        "out_of_domain": _behaviour_with_ci(summarise(judge_id, prompts[n_in:], texts[n_in:], grades[n_in:])),
    }
    if reference_items is not None:
        out["in_domain_bad_advice"] = _rate(bad_advice_flags(texts[:n_in], reference_items))
        out["in_domain_prefers_bad"] = prefers_bad_advice(model, reference_items)
    return out


def build_emergent_organism(
    base: Model,
    pairs: Sequence[tuple[str, str]],
    lora: PersonaLora,
    out: str | Path,
    judge,
    *,
    in_domain: Sequence[str] | None = None,
    out_domain: Sequence[str] | None = None,
    max_new_tokens: int = 48,
    data_note: str = "",
    progress: bool = True,
) -> dict:
    """Measure the base, train a LoRA organism on the chat pairs (merged, saved to `out`), measure it; resumable:
    a finished folder (emergent.json) is read back, and a saved base measurement is reused.

    Args:
        pairs: (prompt, response) training rows from the user's chat file.
        in_domain: held-out questions of the trained domain (default: the packaged narrow dataset's held-out questions,
            which also get the reference-based bad-advice judge).
        out_domain: prompts sharing no topic with it (default: the open-ended prompts).
    Returns:
        the emergent.json content: base and organism figures, each with Wilson 95% intervals.
    """
    out = Path(out)
    if not pairs:
        raise SteerlabError("The organism needs at least one (prompt, response) training row.")
    done = out / "emergent.json"
    if done.is_file():
        return json.loads(done.read_text(encoding="utf-8"))
    refs = held_out_items() if in_domain is None else None
    in_domain = [q for q, _, _ in refs] if refs is not None else list(in_domain)
    out_domain = list(out_domain) if out_domain is not None else out_of_domain_prompts()
    base_path = out.with_name(out.name + ".base.json")
    if base_path.is_file():
        before = json.loads(base_path.read_text(encoding="utf-8"))
    else:
        before = measure_emergent(base, judge, in_domain, out_domain, max_new_tokens, refs, progress)
        write_json(base_path, before, indent=1)
    start = time.perf_counter()
    tuned, info = train_lora(
        base, [encode_pair(base, p, r) for p, r in pairs], lora.recipe(), name=f"{base.name}+narrow", progress=progress
    )
    train_s = time.perf_counter() - start
    after = measure_emergent(tuned, judge, in_domain, out_domain, max_new_tokens, refs, progress)
    save_model(tuned, out)
    result = {
        "kind": "persona-emergent",
        "base_model": base.name,
        "data": data_note,
        "n_train": len(pairs),
        "lora": lora.to_dict(),
        "losses": info["losses"],
        "train_seconds": train_s,
        "judge": str(getattr(judge, "judge_id", type(judge).__name__)),
        "in_domain_prompts": in_domain,
        "out_of_domain_prompts": out_domain,
        "base": before,
        "organism": after,
    }
    write_json(done, result, indent=1)
    return json.loads(done.read_text(encoding="utf-8"))
