"""Latent selection: sample candidates, keep concrete ones, drop any that fire on the prompts themselves.

Offline concreteness rule (no LLM): the label comes from a latent's top firing tokens; a latent is
concrete when it is alive, not dense (fires on < 2% of tokens) and most of its label tokens are
content words (alphabetic, ≥ 3 letters, not a function word). Score = 100 × that fraction, kept at
≥ `min_concreteness` (65, the spec's cut-off). Relevance: a latent is dropped when its max activation
over the tokens of any evaluation prompt (chat-formatted user turn) is above zero (the spec's rule).
"""

from __future__ import annotations

import random
import re

import torch
from typing import Sequence

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


def prompt_peaks(res: Resources, batch_size: int = 16) -> torch.Tensor:
    """[d_sae]: each latent's max activation over all tokens of all evaluation prompts (one readout pass)."""
    ids = [res.model.encode(p) for p in res.prompts]
    acts = readout(res.model, ids, res.sae, batch_size=batch_size)
    return max_over_span(acts, [0] * len(acts)).max(0).values


def select_latents(res: Resources, n: int, *, seed: int = 0, min_concreteness: float = 65.0) -> dict:
    """Sample n latents (seeded); returns {'latents': [...], 'rejected': {reason: count}, 'candidates': k}."""
    rng = random.Random(seed)
    d = res.sae.d_sae
    pool = [i for i in range(d) if res.frequencies is None or res.frequencies[i] > 0]
    rng.shuffle(pool)
    peaks = prompt_peaks(res)
    rejected = {"not_concrete": 0, "fires_on_prompts": 0}
    chosen: list[int] = []
    seen = 0
    for lat in pool:
        if len(chosen) >= n:
            break
        seen += 1
        freq = res.frequencies[lat] if res.frequencies is not None else None
        label = res.labels.get(lat)
        if label is not None and offline_concreteness(label, freq) < min_concreteness:
            rejected["not_concrete"] += 1
        elif float(peaks[lat]) > 0:
            rejected["fires_on_prompts"] += 1
        else:
            chosen.append(lat)
    rule = "offline label rule" if res.labels else "skipped: the SAE has no labels"
    return {"latents": chosen, "rejected": rejected, "candidates": seen, "concreteness": rule}
