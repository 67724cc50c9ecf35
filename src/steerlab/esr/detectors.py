"""Off-topic detector discovery: SAE latents that fire on answers to the wrong question.

Held-out prompts get one unsteered answer each. "Normal" pairs are (prompt, its own answer);
"shuffled" pairs give each prompt another prompt's answer (a seeded derangement). For each pair the
exact token ids are read out and each latent's max over the answer tokens is taken. Per latent we
report active fractions, means, Cohen's d and the AUC (shuffled vs normal). Detectors = the top
`n` latents by Cohen's d among those with AUC ≥ `min_auc` and shuffled mean > normal mean; the
original code's strict rule (never on normal, on ≥ 80% of shuffled) is reported beside it.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

import steerlab
from steerlab.esr.config import EsrConfig
from steerlab.esr.readout import max_over_span, readout
from steerlab.esr.setup import Resources
from steerlab.esr.trials import stable_int

ACTIVE = 1e-8


def derangement(n: int, seed: int) -> list[int]:
    """A permutation with no fixed point (n ≥ 2), seeded."""
    if n < 2:
        raise ValueError("a derangement needs at least two items")
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != p for i, p in enumerate(perm)):
            return perm


def auc(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per-column AUC of pos [n_pos, d] vs neg [n_neg, d]: P(pos > neg) + ½ P(tie)."""
    greater = (pos[:, None, :] > neg[None, :, :]).float().mean((0, 1))
    ties = (pos[:, None, :] == neg[None, :, :]).float().mean((0, 1))
    return greater + 0.5 * ties


def cohens_d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-column Cohen's d (a − b) with the pooled SD; 0 where both columns are constant."""
    na, nb = a.shape[0], b.shape[0]
    pooled = (((na - 1) * a.var(0, unbiased=True) + (nb - 1) * b.var(0, unbiased=True)) / max(na + nb - 2, 1)).sqrt()
    diff = a.mean(0) - b.mean(0)
    return torch.where(pooled > 0, diff / pooled.clamp_min(1e-12), torch.zeros_like(diff))


def contrast(normal: torch.Tensor, shuffled: torch.Tensor, *, n: int = 16, min_auc: float = 0.8) -> dict:
    """Rank latents by how well they separate shuffled from normal pairs; returns detectors and stats."""
    a, d = auc(shuffled, normal), cohens_d(shuffled, normal)
    nf, sf = (normal > ACTIVE).float().mean(0), (shuffled > ACTIVE).float().mean(0)
    nm, sm = normal.mean(0), shuffled.mean(0)
    eligible = (a >= min_auc) & (sm > nm)
    order = torch.argsort(torch.where(eligible, d, torch.full_like(d, -float("inf"))), descending=True)
    detectors = [int(i) for i in order[: int(eligible.sum())][:n].tolist()]
    strict = torch.nonzero((nf == 0) & (sf >= 0.8)).flatten().tolist()
    stats = {
        int(i): {"auc": round(float(a[i]), 4), "cohens_d": round(float(d[i]), 4), "normal_mean": float(nm[i]), "shuffled_mean": float(sm[i]),
                 "normal_active": round(float(nf[i]), 4), "shuffled_active": round(float(sf[i]), 4)}
        for i in set(detectors) | set(strict[:64])
    }
    return {"detectors": detectors, "strict_rule": [int(x) for x in strict], "stats": stats, "min_auc": min_auc,
            "n_eligible": int(eligible.sum()), "top_d": [float(x) for x in d[order[:32]].tolist()]}


def discover(res: Resources, cfg: EsrConfig, *, progress: bool = False) -> dict:
    """Generate unsteered answers to the discovery prompts, contrast normal vs shuffled pairs, pick detectors."""
    prompts = res.discovery
    seeds = [stable_int(cfg.seed, "discovery", i) for i in range(len(prompts))]
    gens = steerlab.generate(res.model, prompts, None, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                             repetition_penalty=cfg.repetition_penalty, seed=seeds, batch_size=cfg.batch_size, progress=progress)
    keep = [g for g in gens if g.token_ids]
    perm = derangement(len(keep), stable_int(cfg.seed, "derangement"))
    normal_seq = [g.prompt_ids + g.token_ids for g in keep]
    shuffled_seq = [keep[i].prompt_ids + keep[p].token_ids for i, p in enumerate(perm)]
    starts = [len(g.prompt_ids) for g in keep]
    normal_acts = readout(res.model, normal_seq, res.sae, batch_size=cfg.batch_size)
    shuffled_acts = readout(res.model, shuffled_seq, res.sae, batch_size=cfg.batch_size)
    normal, shuffled = max_over_span(normal_acts, starts), max_over_span(shuffled_acts, starts)
    result = contrast(normal, shuffled, n=cfg.n_detectors, min_auc=cfg.detector_min_auc)
    result["activity"] = latent_activity(normal_acts + shuffled_acts, starts + starts)
    result.update({"n_prompts": len(keep), "labels": {str(i): res.label(i) for i in result["detectors"]},
                   "examples": [{"prompt": keep[i].prompt, "answer": keep[i].text[:400]} for i in range(min(3, len(keep)))]})
    return result


def latent_activity(acts: Sequence[torch.Tensor], starts: Sequence[int]) -> dict[str, list[float]]:
    """Per latent over answer tokens: firing frequency and mean activation when firing (what a zero-ablation removes)."""
    tokens = torch.cat([a[s:] for a, s in zip(acts, starts)])
    active = tokens > ACTIVE
    count = active.sum(0).float()
    mean_active = torch.where(count > 0, (tokens * active).sum(0) / count.clamp_min(1), torch.zeros_like(count))
    return {"n_tokens": int(tokens.shape[0]), "frequency": [float(f"{x:.5g}") for x in (count / max(tokens.shape[0], 1)).tolist()],
            "mean_active": [float(f"{x:.5g}") for x in mean_active.tolist()]}


def matched_random_sets(detectors: Sequence[int], activity: dict[str, list[float]], k: int, seed: int,
                        exclude: Sequence[int] = (), pool_size: int = 5) -> list[list[int]]:
    """k sets of non-detector latents, each latent matched to one detector on firing frequency and magnitude.

    Distance is Euclidean in (log frequency, log mean activation when firing), both measured over the
    same answer tokens; each detector's stand-in is drawn at random from its `pool_size` nearest
    unused candidates, so no latent appears twice across sets.
    """
    import math

    freq, mag = activity["frequency"], activity["mean_active"]
    banned = set(detectors) | set(exclude)
    alive = [i for i in range(len(freq)) if freq[i] > 0 and i not in banned]
    if len(alive) < k * len(detectors):
        raise ValueError(f"only {len(alive)} active non-detector latents for {k} sets of {len(detectors)}")

    def point(i: int) -> tuple[float, float]:
        return math.log(max(freq[i], 1e-7)), math.log(max(mag[i], 1e-7))

    sets: list[list[int]] = []
    used: set[int] = set()
    rng = random.Random(seed)
    for _ in range(k):
        chosen: list[int] = []
        for det in detectors:
            fx, mx = point(det)
            pool = sorted((i for i in alive if i not in used), key=lambda i: math.dist(point(i), (fx, mx)))[:pool_size]
            pick = rng.choice(pool)
            used.add(pick)
            chosen.append(pick)
        sets.append(chosen)
    return sets
