"""Concept evidence for SAE latents: do a latent's top contexts agree in meaning?

A token-level latent (one that fires on "of" anywhere) has top contexts from unrelated passages, so
their sentence embeddings scatter; a concept latent (cooking, astronomy) has contexts that agree.
Coherence = mean pairwise cosine of the packaged embedder's embeddings of a latent's top contexts,
minus the mean cosine of contexts drawn from different latents (the chance level of this text).
"""

from __future__ import annotations

import random
from typing import Sequence

import torch


def coherence_scores(
    contexts: dict[int, Sequence[str]], embed, *, min_contexts: int = 4, seed: int = 0, baseline_pairs: int = 4000
) -> tuple[dict[int, float], float]:
    """({latent: coherence above chance}, chance level) for latents with at least `min_contexts` contexts.

    Args:
        contexts: each latent's top-context texts.
        embed: texts -> [n, d] unit-norm embeddings (e.g. `packaged_embedder().embed`).
        min_contexts: latents with fewer contexts get no score.
        seed: for the random cross-latent pairs that set the chance level.
        baseline_pairs: how many such pairs.

    Returns:
        The per-latent excess coherence and the chance level it was measured against.
    """
    keep = {lat: list(c) for lat, c in contexts.items() if len(c) >= min_contexts}
    if not keep:
        return {}, 0.0
    order = sorted(keep)
    texts = [t for lat in order for t in keep[lat]]
    emb = embed(texts).float()
    spans, start = {}, 0
    for lat in order:
        spans[lat] = (start, start + len(keep[lat]))
        start += len(keep[lat])
    rng = random.Random(seed)
    owner = [lat for lat in order for _ in keep[lat]]
    pairs = []
    for _ in range(baseline_pairs):
        i, j = rng.randrange(len(texts)), rng.randrange(len(texts))
        if owner[i] != owner[j]:
            pairs.append((i, j))
    chance = float(torch.stack([emb[i] @ emb[j] for i, j in pairs]).mean()) if pairs else 0.0
    scores: dict[int, float] = {}
    for lat, (a, b) in spans.items():
        e = emb[a:b]
        sim = e @ e.T
        n = e.shape[0]
        mean_off = float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))
        scores[lat] = round(mean_off - chance, 4)
    return scores, round(chance, 4)


class ConceptScorer:
    """Lazy concept coherence: embeds a latent's top contexts only when it is asked about (selection meets few latents).

    The chance level is measured once, on random pairs of contexts from different latents.
    """

    def __init__(
        self,
        contexts: dict[int, Sequence[str]],
        embed,
        *,
        min_contexts: int = 4,
        seed: int = 0,
        chance_sample: int = 400,
    ):
        self.contexts = {int(k): list(v) for k, v in contexts.items()}
        self.embed = embed
        self.min_contexts = min_contexts
        self._scores: dict[int, float | None] = {}
        rng = random.Random(seed)
        owners = sorted(self.contexts)
        picks = [
            (lat, rng.choice(self.contexts[lat]))
            for lat in rng.sample(owners, min(chance_sample, len(owners)))
            if self.contexts[lat]
        ]
        if len(picks) >= 2:
            emb = embed([t for _, t in picks]).float()
            sim = emb @ emb.T
            n = len(picks)
            self.chance = round(float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))), 4)
        else:
            self.chance = 0.0

    def score(self, latent: int) -> float | None:
        """Excess coherence of one latent's top contexts (None: too few contexts to say)."""
        latent = int(latent)
        if latent not in self._scores:
            texts = self.contexts.get(latent, [])
            if len(texts) < self.min_contexts:
                self._scores[latent] = None
            else:
                e = self.embed(texts).float()
                sim = e @ e.T
                n = e.shape[0]
                self._scores[latent] = round(float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1))) - self.chance, 4)
        return self._scores[latent]
