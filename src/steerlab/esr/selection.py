"""Latent selection: sample candidates, keep concrete ones, drop any that fire on the prompts themselves.

Concept evidence (when the SAE ships inspect/contexts.json): the latent's top contexts must agree in
meaning under the packaged embedder, so token-level latents (firing on "of" anywhere) are dropped.
Fluency at the threshold is checked after calibration (runner: `fluent_latents`).

Offline concreteness rule (no LLM): the label comes from a latent's top firing tokens; a latent is
concrete when it is alive, not dense (fires on < 2% of tokens) and most of its label tokens are
content words (alphabetic, ≥ 3 letters, not a function word). Score = 100 × that fraction, kept at
≥ `min_concreteness` (65, the spec's cut-off). Relevance: a latent is dropped when its max activation
over the tokens of any evaluation prompt (chat-formatted user turn) is above zero (the spec's rule).
"""

from __future__ import annotations

import random
import re
from typing import Callable, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.esr.readout import max_over_span, readout
from steerlab.esr.setup import Resources

FUNCTION_WORDS = frozenset(
    "the and for that this with from you your are was were have has had not but can will would could should "
    "they them their there then than what when where which who how into over under about been being its his her "
    "our out all any one two some such only also just very more most much many each other same".split()
)
_TOKEN = re.compile(r"'([^']*)'")


def offline_concreteness(label: str, frequency: float | None = None) -> float:
    """0-100: the share of a label's quoted tokens that are content words; 0 for dead or dense latents."""
    if label in ("", "dead") or "(dense)" in label or (frequency is not None and (frequency <= 0 or frequency >= 0.02)):
        return 0.0
    tokens = [t.strip().lower() for t in _TOKEN.findall(label)] or label.lower().split()
    if not tokens:
        return 0.0
    content = [t for t in tokens if t.isalpha() and len(t) >= 3 and t not in FUNCTION_WORDS]
    return 100.0 * len(content) / len(tokens)


CONCRETENESS_SYSTEM = "You analyse labels of language-model features. Reply with valid JSON only."
CONCRETENESS_USER = (
    "Rate how concrete each feature label below is, from 0 (very abstract or general) to 100 (very concrete, a specific "
    "topic, object or domain). Labels about conversational style or the assistant's behaviour are abstract: rate them low. "
    'Reply with a JSON list with one object per label, in the same order: {{"index": <position>, "rating": <0-100>}}.\n\nLabels:\n{labels}'
)


def llm_concreteness(
    complete: Callable[[str, str], str], labels: Sequence[str], batch: int = 50, tries: int = 3
) -> list[float]:
    """0-100 concreteness per label from an LLM (complete(system, user) -> text), matched by position, not by string.

    A reply that does not parse or misses a label is retried; after `tries` it is an error (never a silent 0).
    """
    import json

    out: list[float] = []
    for start in range(0, len(labels), batch):
        part = list(labels[start : start + batch])
        listing = "\n".join(f"{i}: {json.dumps(label)}" for i, label in enumerate(part))
        for attempt in range(tries):
            reply = complete(CONCRETENESS_SYSTEM, CONCRETENESS_USER.format(labels=listing))
            text = reply.strip().removeprefix("```json").removeprefix("```").removesuffix("```")
            try:
                items = json.loads(text[text.index("[") : text.rindex("]") + 1])
                ratings = {int(it["index"]): float(it["rating"]) for it in items}
                if set(ratings) >= set(range(len(part))):
                    out += [min(100.0, max(0.0, ratings[i])) for i in range(len(part))]
                    break
            except (ValueError, KeyError, TypeError):
                pass
        else:
            raise SteerlabError(
                f"The concreteness grader gave no usable rating for labels {start}-{start + len(part) - 1} after {tries} tries."
            )
    return out


def prompt_peaks(res: Resources, batch_size: int = 16) -> torch.Tensor:
    """[d_sae]: each latent's max activation over all tokens of all evaluation prompts (one readout pass)."""
    ids = [res.model.encode(p) for p in res.prompts]
    acts = readout(res.model, ids, res.sae, batch_size=batch_size)
    return max_over_span(acts, [0] * len(acts)).max(0).values


def select_latents(
    res: Resources,
    n: int,
    *,
    seed: int = 0,
    min_concreteness: float = 65.0,
    rater: Callable[[str, str], str] | None = None,
    multiplier: int = 3,
    min_coherence: float | None = None,
) -> dict:
    """Sample n latents (seeded); returns {'latents': [...], 'rejected': {reason: count}, 'candidates': k}.

    rater: an LLM `complete(system, user)`; when given, label concreteness is LLM-rated (candidates
    in chunks of multiplier × n), otherwise the offline rule applies.
    min_coherence: when the SAE has concept evidence (`res.concepts`: how well a latent's top contexts
    agree in meaning under the packaged embedder, above chance), latents below it are rejected as
    token-level ("no_concept"); latents without a score are rejected too.
    """
    rng = random.Random(seed)
    d = res.sae.d_sae
    pool = [i for i in range(d) if res.frequencies is None or res.frequencies[i] > 0]
    rng.shuffle(pool)
    peaks = prompt_peaks(res)
    rejected = {"not_concrete": 0, "no_concept": 0, "fires_on_prompts": 0}
    concepts = res.concepts if min_coherence is not None else None
    chosen: list[int] = []
    seen = 0
    llm_scores: dict[int, float] = {}
    for lat in pool:
        if len(chosen) >= n:
            break
        seen += 1
        freq = res.frequencies[lat] if res.frequencies is not None else None
        label = res.labels.get(lat)
        if rater is not None and label is not None and lat not in llm_scores:
            chunk = [x for x in pool[seen - 1 : seen - 1 + multiplier * n] if x in res.labels]
            llm_scores.update(zip(chunk, llm_concreteness(rater, [res.labels[x] for x in chunk])))
        score = (
            llm_scores[lat]
            if rater is not None and label is not None
            else (offline_concreteness(label, freq) if label is not None else None)
        )
        if score is not None and (score < min_concreteness or (freq is not None and freq <= 0)):
            rejected["not_concrete"] += 1
        elif concepts is not None and (concepts.score(lat) is None or concepts.score(lat) < min_coherence):
            rejected["no_concept"] += 1
        elif float(peaks[lat]) > 0:
            rejected["fires_on_prompts"] += 1
        else:
            chosen.append(lat)
    rule = (
        ("LLM-rated" if rater is not None else "offline label rule") if res.labels else "skipped: the SAE has no labels"
    )
    evidence = (
        f"concept coherence >= {min_coherence:g} (packaged embedder)"
        if concepts is not None
        else "none (the SAE ships no contexts.json)"
    )
    return {
        "latents": chosen,
        "rejected": rejected,
        "candidates": seen,
        "concreteness": rule,
        "concept_evidence": evidence,
        "coherence": {str(lat): concepts.score(lat) for lat in chosen} if concepts is not None else {},
        "coherence_chance": getattr(concepts, "chance", None),
    }
