"""The heuristic judge's list-free restart signal: a linear probe on MiniLM fragment states, plus a topic shift.

One pass of the packaged embedder over each response gives contextual token states; each
sentence-like fragment's state is the mean over its tokens. A logistic-regression probe on that state
says whether the fragment comments on the answer itself (an apology, noticing a drift, refocusing):
it was trained on project-built sentences (`judges.restart_data`), never on the validation set's
held-out phrasings. A fragment opens a new attempt when the probe is sure, or when it is fairly sure
and the topic moves towards the prompt across it (the text after it is closer to the prompt than the
attempt before it). The thresholds are picked by `tune()` on a dev split of the training phrasings
(never on the validation set). The weights and rule live in `restart_probe_weights.py`; `python -m
steerlab.judges.restart_probe` re-tunes and retrains them (deterministic; minutes on a laptop CPU).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import torch

from steerlab.judges.restarts import fragments
from steerlab.paths import write_text

MAX_CHUNK_TOKENS = 240  # fragments are grouped into chunks below the embedder's 256-token window


@dataclass
class Features:
    """One response, embedded once: its fragments, their unit vectors, and the whole response's unit vector."""

    spans: list[tuple[int, int]]
    vectors: torch.Tensor  # [n_fragments, 384], unit rows
    whole: torch.Tensor  # [384], mean over every token of the response, unit length


def _chunks(text: str, spans: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Consecutive fragments grouped into chunks of at most ~max_chars characters (one fragment may exceed it)."""
    chunks, start, end = [], None, None
    for a, b in spans:
        if start is not None and b - start > max_chars:
            chunks.append((start, end))
            start = None
        start = a if start is None else start
        end = b
    if start is not None:
        chunks.append((start, end))
    return chunks or [(0, len(text))]


def featurize(embedder, texts: Sequence[str]) -> list[Features]:
    """Fragment and whole-response vectors for each text, from one embedder pass over its chunks."""
    per_text = []
    jobs: list[str] = []
    for text in texts:
        spans = fragments(text)
        chunks = _chunks(text, spans, MAX_CHUNK_TOKENS * 4) if spans else [(0, len(text))]
        per_text.append((spans, chunks, len(jobs)))
        jobs += [text[a:b] for a, b in chunks]
    states = embedder.token_states(jobs) if jobs else []
    out = []
    for text, (spans, chunks, first) in zip(texts, per_text):
        dim = states[first][0].shape[1] if states else 384
        frag_sum, frag_n = torch.zeros(len(spans), dim), torch.zeros(len(spans))
        whole_sum, whole_n = torch.zeros(dim), 0
        starts = [fa for fa, _ in spans]
        for c, (ca, _) in enumerate(chunks):
            h, offs = states[first + c]
            whole_sum += h.sum(0)
            whole_n += h.shape[0]
            rows, ids = [], []
            for t, (oa, ob) in enumerate(offs):
                k = bisect.bisect_right(starts, ca + oa) - 1
                if ob > oa and k >= 0 and ca + oa < spans[k][1]:  # a word piece inside fragment k (not a special token)
                    rows.append(t)
                    ids.append(k)
            if rows:
                frag_sum.index_add_(0, torch.tensor(ids), h[rows])
                frag_n.index_add_(0, torch.tensor(ids), torch.ones(len(ids)))
        vectors = torch.nn.functional.normalize(frag_sum / frag_n.clamp_min(1).unsqueeze(1), dim=-1)
        whole = torch.nn.functional.normalize(whole_sum / max(whole_n, 1), dim=0)
        out.append(Features(spans, vectors, whole))
    return out


@dataclass(frozen=True)
class ProbeRule:
    """When a fragment opens an attempt: logit ≥ sure, or logit ≥ maybe with the topic moving towards the prompt by ≥ shift."""

    sure: float = 0.5
    maybe: float = -0.5
    shift: float = 0.05
    window: int = 3  # fragments after the candidate that measure where the topic went


class RestartProbe:
    """Logistic regression on unit fragment vectors: w·v + b is the log-odds that a fragment is a self-correction."""

    def __init__(self, weight: Sequence[float], bias: float, rule: ProbeRule | None = None):
        self.weight = torch.tensor(list(weight), dtype=torch.float32)
        self.bias = float(bias)
        self.rule = rule or ProbeRule()

    def logits(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors @ self.weight + self.bias

    def boundaries(self, feats: Features, prompt_vec: torch.Tensor) -> list[int]:
        """Indices of the fragments that open a new attempt (never the first, never one with nothing after it)."""
        n = len(feats.spans)
        if n < 2:
            return []
        z = self.logits(feats.vectors)
        rel = feats.vectors @ prompt_vec
        cuts: list[int] = []
        start = 0  # first fragment of the current attempt
        k = 1
        while k < n - 1:
            before = rel[start:k].mean()
            after = rel[k + 1 : k + 1 + self.rule.window].mean()
            if z[k] >= self.rule.sure or (z[k] >= self.rule.maybe and after - before >= self.rule.shift):
                cuts.append(k)
                start = k
                while k + 1 < n - 1 and z[k + 1] >= self.rule.sure:  # a multi-fragment self-correction is one boundary
                    k += 1
            k += 1
        return cuts


def packaged_probe() -> RestartProbe:
    """The shipped probe (weights trained by `train()` on `judges.restart_data`)."""
    from steerlab.judges.restart_probe_weights import BIAS, RULE, WEIGHT

    return RestartProbe(WEIGHT, BIAS, ProbeRule(**RULE))


def labelled_fragments(embedder, n: int, seed: int, restarts=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Fragment vectors and 0/1 labels from synthetic training answers (a fragment inside an inserted restart is 1)."""
    from steerlab.judges import restart_data

    items = restart_data.training_answers(n, seed, restarts or restart_data.RESTARTS)
    feats = featurize(embedder, [answer for _, answer, _ in items])
    xs, ys = [], []
    for (_, _, pieces), f in zip(items, feats):
        for k, (a, _) in enumerate(f.spans):
            label = next((lab for pa, pb, lab in pieces if pa <= a < pb), 0)
            xs.append(f.vectors[k])
            ys.append(float(label))
    return torch.stack(xs), torch.tensor(ys)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-4, steps: int = 300) -> tuple[torch.Tensor, float]:
    """L2-regularised logistic regression with class-balanced weights, fitted by L-BFGS (deterministic)."""
    x, y = x.double(), y.double()
    pos = y.mean().clamp(1e-6, 1 - 1e-6)
    sample_w = torch.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        z = x @ w + b
        loss = (sample_w * torch.nn.functional.binary_cross_entropy_with_logits(z, y, reduction="none")).mean() + l2 * (
            w @ w
        )
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float(), float(b.detach())


def train(embedder=None, n: int = 1200, seed: int = 0) -> RestartProbe:
    """Fit the probe on `n` synthetic answers built from `judges.restart_data`."""
    from steerlab.judges.embedder import packaged_embedder

    x, y = labelled_fragments(embedder or packaged_embedder(), n, seed)
    w, b = fit_logistic(x, y)
    return RestartProbe(w.tolist(), b)


def write_weights(probe: RestartProbe, rule: ProbeRule, path) -> None:
    """Write the probe as a Python module (weights rounded to 6 digits)."""

    body = ",\n    ".join(
        ", ".join(f"{v:.6g}" for v in probe.weight[i : i + 8].tolist()) for i in range(0, len(probe.weight), 8)
    )
    text = (
        '"""Weights of the restart probe, written by `python -m steerlab.judges.restart_probe` (do not edit by hand)."""\n\n'
        f"BIAS = {probe.bias:.6g}\nRULE = {dict(rule.__dict__)!r}\nWEIGHT = (\n    {body},\n)\n"
    )
    write_text(path, text)


def tune(embedder=None, seed: int = 1, max_false: float = 0.02) -> tuple[ProbeRule, dict]:
    """Pick the rule on a dev split of the training phrasings: fit on 80%, grid-search on answers built with the other 20%.

    The objective is attempt-count accuracy on the dev answers with at most `max_false` of single
    answers split. The judge-validation set is never used here.
    """
    import itertools
    import random

    from steerlab.judges import restart_data
    from steerlab.judges.embedder import packaged_embedder

    embedder = embedder or packaged_embedder()
    phrasings = list(restart_data.RESTARTS)
    random.Random(seed).shuffle(phrasings)
    cut = int(0.8 * len(phrasings))
    fit_on, dev = tuple(phrasings[:cut]), tuple(phrasings[cut:])
    w, b = fit_logistic(*labelled_fragments(embedder, 800, 0, fit_on))
    items = restart_data.training_answers(500, 7, dev)
    feats = featurize(embedder, [a for _, a, _ in items])
    prompts = sorted({p for p, _, _ in items})
    pvec = dict(zip(prompts, embedder.embed(prompts)))
    truth = [
        {k for k, (fa, _) in enumerate(f.spans) if fa in {pa for pa, _, lab in pieces if lab}}
        for (_, _, pieces), f in zip(items, feats)
    ]
    best: tuple = (-1.0,)
    for sure, maybe, shift in itertools.product(
        [-0.5, 0.0, 0.5, 1.0, 2.0], [-2.0, -1.5, -1.0, -0.5, 0.0], [0.0, 0.05, 0.1, 0.15]
    ):
        if maybe > sure:
            continue
        rule = ProbeRule(sure, maybe, shift)
        probe = RestartProbe(w.tolist(), b, rule)
        ok = false = singles = 0
        for (p, _, _), f, t in zip(items, feats, truth):
            cuts = set(probe.boundaries(f, pvec[p]))
            ok += len(cuts) == len(t)
            if not t:
                singles += 1
                false += bool(cuts)
        acc, fr = ok / len(items), false / max(singles, 1)
        if fr <= max_false and acc > best[0]:
            best = (acc, fr, rule)
    if best[0] < 0:
        raise RuntimeError("no rule keeps false restarts within the limit on the dev answers")
    return best[2], {
        "dev_accuracy": round(best[0], 4),
        "dev_false_restarts": round(best[1], 4),
        "dev_phrasings": len(dev),
    }


if __name__ == "__main__":
    from pathlib import Path

    rule, report = tune()
    print("rule", rule, report, flush=True)
    probe = train()
    write_weights(probe, rule, Path(__file__).with_name("restart_probe_weights.py"))
    print("wrote", Path(__file__).with_name("restart_probe_weights.py"))
