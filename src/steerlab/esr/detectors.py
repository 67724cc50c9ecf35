"""Off-topic detector discovery: SAE latents that fire on answers to the wrong question.

Held-out prompts get one unsteered answer each. "Normal" pairs are (prompt, its own answer);
"shuffled" pairs give each prompt another prompt's answer (a seeded derangement). For each pair the
exact token ids are read out and each latent's max over the answer tokens (`detector_span="answer"`)
or over every token of the pair (`"all"`, as the original) is taken. Per latent we report active
fractions, means, Cohen's d and the AUC (shuffled vs normal). With `detector_rule="contrast"`,
detectors = the top `n` latents by Cohen's d among those with AUC ≥ `min_auc` and shuffled mean >
normal mean; with `"strict"` (the original code's rule) they are the latents that never fire on a
normal pair and fire on ≥ 80% of shuffled pairs, sorted by that fraction, then by shuffled mean
(`n` = 0 keeps them all). Whichever rule is not used is reported beside the other, and so is the best
AUC chance alone reaches over all latents (a permutation null), to judge the detectors by.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

from steerlab.engine.generate import generate
from steerlab.errors import SteerlabError
from steerlab.esr.config import EsrConfig
from steerlab.esr.readout import max_over_span, readout
from steerlab.esr.setup import Resources
from steerlab.esr.trials import stable_int
from steerlab.stats import auc

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


def chance_auc(
    normal: torch.Tensor, shuffled: torch.Tensor, *, n_perm: int = 20, seed: int = 0, quantile: float = 0.95
) -> float:
    """The best AUC over all latents that chance alone reaches: a quantile of the max under random relabelling.

    With thousands of latents and tens of pairs some latent always looks separating; a detector's AUC
    means little unless it clears this level.
    """
    rows = torch.cat([shuffled, normal])
    gen = torch.Generator().manual_seed(seed)
    maxima = []
    for _ in range(n_perm):
        perm = torch.randperm(rows.shape[0], generator=gen)
        fake_pos, fake_neg = rows[perm[: shuffled.shape[0]]], rows[perm[shuffled.shape[0] :]]
        maxima.append(float(auc(fake_pos, fake_neg).float().max()))
    return float(torch.tensor(maxima).quantile(quantile))


def cohens_d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-column Cohen's d (a − b) with the pooled SD; 0 where both columns are constant."""
    na, nb = a.shape[0], b.shape[0]
    pooled = (((na - 1) * a.var(0, unbiased=True) + (nb - 1) * b.var(0, unbiased=True)) / max(na + nb - 2, 1)).sqrt()
    diff = a.mean(0) - b.mean(0)
    return torch.where(pooled > 0, diff / pooled.clamp_min(1e-12), torch.zeros_like(diff))


def strict_rule(normal: torch.Tensor, shuffled: torch.Tensor, *, min_shuffled: float = 0.8) -> list[int]:
    """The original rule: below ACTIVE on every normal pair, above it on ≥ min_shuffled of shuffled pairs; sorted by
    (shuffled active fraction, shuffled mean), both descending."""
    nf, sf = (normal > ACTIVE).float().mean(0), (shuffled > ACTIVE).float().mean(0)
    sm = shuffled.mean(0)
    keep = torch.nonzero((nf == 0) & (sf >= min_shuffled)).flatten().tolist()
    return sorted((int(i) for i in keep), key=lambda i: (-float(sf[i]), -float(sm[i]), i))


def contrast(
    normal: torch.Tensor, shuffled: torch.Tensor, *, n: int = 16, min_auc: float = 0.8, rule: str = "contrast"
) -> dict:
    """Pick detectors by `rule` ("contrast": top n by Cohen's d among latents with AUC ≥ min_auc; "strict": the
    original's rule, first n, n = 0 for all); returns the detectors, the other rule's pick and per-latent stats."""
    a, d = auc(shuffled, normal).float(), cohens_d(shuffled, normal)
    nf, sf = (normal > ACTIVE).float().mean(0), (shuffled > ACTIVE).float().mean(0)
    nm, sm = normal.mean(0), shuffled.mean(0)
    eligible = (a >= min_auc) & (sm > nm)
    order = torch.argsort(torch.where(eligible, d, torch.full_like(d, -float("inf"))), descending=True)
    by_contrast = [int(i) for i in order[: int(eligible.sum())].tolist()]
    strict = strict_rule(normal, shuffled)
    picked = strict if rule == "strict" else by_contrast
    detectors = picked[:n] if n > 0 else picked
    stats = {
        int(i): {
            "auc": round(float(a[i]), 4),
            "cohens_d": round(float(d[i]), 4),
            "normal_mean": float(nm[i]),
            "shuffled_mean": float(sm[i]),
            "normal_active": round(float(nf[i]), 4),
            "shuffled_active": round(float(sf[i]), 4),
        }
        for i in set(detectors) | set(strict[:64])
    }
    return {
        "detectors": detectors,
        "rule": rule,
        "strict_rule": [int(x) for x in strict],
        "contrast_rule": by_contrast[: max(n, 16)],
        "stats": stats,
        "min_auc": min_auc,
        "n_eligible": int(eligible.sum()),
        "top_d": [float(x) for x in d[order[:32]].tolist()],
    }


def discover(res: Resources, cfg: EsrConfig, *, progress: bool = False) -> dict:
    """Generate unsteered answers to the discovery prompts, contrast normal vs shuffled pairs, pick detectors.

    Each prompt gets `discovery_answers` seeded answers; every answer set is shuffled by
    `discovery_derangements` derangements, so there are that many more off-topic pairs than normal ones.
    """
    prompts = list(res.discovery)
    if len(prompts) < 2:
        raise SteerlabError("Detector discovery needs at least two held-out prompts.")
    answer_sets = []
    for rep in range(cfg.discovery_answers):
        seeds = [stable_int(cfg.seed, "discovery", rep, i) for i in range(len(prompts))]
        gens = generate(
            res.model,
            prompts,
            None,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            repetition_penalty=cfg.repetition_penalty,
            seed=seeds,
            batch_size=cfg.batch_size,
            progress=progress,
        )
        answer_sets.append([g for g in gens if g.token_ids])
    normal_seq, normal_starts, shuffled_seq, shuffled_starts = [], [], [], []
    for rep, keep in enumerate(answer_sets):
        if len(keep) < 2:
            continue
        normal_seq += [g.prompt_ids + g.token_ids for g in keep]
        normal_starts += [len(g.prompt_ids) for g in keep]
        for d in range(cfg.discovery_derangements):
            perm = derangement(len(keep), stable_int(cfg.seed, "derangement", rep, d))
            shuffled_seq += [keep[i].prompt_ids + keep[p].token_ids for i, p in enumerate(perm)]
            shuffled_starts += [len(keep[i].prompt_ids) for i in range(len(keep))]
    if not normal_seq:
        raise SteerlabError(
            "The model gave fewer than two non-empty answers to the discovery prompts; raise max_new_tokens."
        )
    normal_acts = readout(res.model, normal_seq, res.sae, batch_size=cfg.batch_size)
    shuffled_acts = readout(res.model, shuffled_seq, res.sae, batch_size=cfg.batch_size)
    answer_starts = normal_starts + shuffled_starts
    if cfg.detector_span == "all":  # the original: each latent's max over every token of the pair, prompt included
        normal_starts, shuffled_starts = [0] * len(normal_seq), [0] * len(shuffled_seq)
    normal, shuffled = max_over_span(normal_acts, normal_starts), max_over_span(shuffled_acts, shuffled_starts)
    chance = round(chance_auc(normal, shuffled, seed=stable_int(cfg.seed, "chance-auc")), 4)
    cut = max(cfg.detector_min_auc, chance + 1e-4) if cfg.detector_cut == "chance" else cfg.detector_min_auc
    result = contrast(normal, shuffled, n=cfg.n_detectors, min_auc=cut, rule=cfg.detector_rule)
    result["chance_auc"], result["cut"], result["span"] = chance, cfg.detector_cut, cfg.detector_span
    result["best_auc"] = round(float(auc(shuffled, normal).float().max()), 4)
    result["activity"] = latent_activity(normal_acts + shuffled_acts, answer_starts)  # answer tokens, whatever the span
    first = answer_sets[0]
    result.update(
        {
            "n_prompts": len(prompts),
            "n_normal": len(normal_seq),
            "n_shuffled": len(shuffled_seq),
            "labels": {str(i): res.label(i) for i in result["detectors"]},
            "examples": [{"prompt": first[i].prompt, "answer": first[i].text[:400]} for i in range(min(3, len(first)))],
        }
    )
    return result


def latent_activity(acts: Sequence[torch.Tensor], starts: Sequence[int]) -> dict[str, list[float]]:
    """Per latent over answer tokens: firing frequency and mean activation when firing (what a zero-ablation removes)."""
    width = acts[0].shape[1] if acts else 0
    count, total, n_tokens = torch.zeros(width), torch.zeros(width), 0
    for a, s in zip(acts, starts):  # per sequence: never a second copy of every readout
        span = a[s:]
        active = span > ACTIVE
        count += active.sum(0)
        total += (span * active).sum(0)
        n_tokens += span.shape[0]
    mean_active = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(count))
    return {
        "n_tokens": n_tokens,
        "frequency": [float(f"{x:.5g}") for x in (count / max(n_tokens, 1)).tolist()],
        "mean_active": [float(f"{x:.5g}") for x in mean_active.tolist()],
    }


def matched_random_sets(
    detectors: Sequence[int],
    activity: dict[str, list[float]],
    k: int,
    seed: int,
    exclude: Sequence[int] = (),
    pool_size: int = 5,
) -> list[list[int]]:
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


def read_detector_ids(text: str) -> tuple[int, ...]:
    """Detector ids from a file (a JSON list, a JSON object with "detectors" or "off_topic_detectors", or ids in text)
    or from comma-separated ids; range checks happen once the SAE is loaded."""
    import json
    import re
    from pathlib import Path

    path = Path(text).expanduser()
    source = f"the detectors file {path}" if path.is_file() else "--detectors"
    body = path.read_text(encoding="utf-8") if path.is_file() else text
    if not path.is_file() and re.search(r"[/\\]|\.(json|txt|csv)$", text):
        raise SteerlabError(f"No detectors file at {path}.")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = data.get("detectors", data.get("off_topic_detectors"))
    if data is None:
        items = [x for x in re.split(r"[\s,]+", body.strip()) if x]
    elif isinstance(data, list):
        items = data
    else:
        items = [data]
    ids = []
    for x in items:
        if isinstance(x, bool) or not (isinstance(x, int) or (isinstance(x, str) and re.fullmatch(r"\d+", x))):
            raise SteerlabError(f"{source} must hold non-negative integer latent ids; found {x!r}.")
        ids.append(int(x))
    if not ids:
        raise SteerlabError(f"{source} holds no detector ids.")
    return tuple(dict.fromkeys(ids))
