"""Loss terms for mask training: a KL to the frozen full model (top-k compressed) and a bounded unlikelihood.

Each term trains one view of the model on one set of (prompt, response) pairs:
  view "removed" = the model with the circuit ablated (mask 1 − g), "circuit" = the circuit alone (mask g).
The full model's distributions are computed once, without grad, and kept as top-k plus one "rest" bucket,
so the KL is exact between the coarsened distributions and costs no teacher forward per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import torch

from steerlab.circuits.data import BackdoorData, add_trigger
from steerlab.circuits.forward import PairBatch, make_batch, response_logits
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model

View = Literal["removed", "circuit"]


@dataclass
class TopK:
    """A teacher's per-slot top-k token ids and log-probs, plus the log of the remaining mass ([n, k], [n])."""

    ids: torch.Tensor
    logp: torch.Tensor
    rest: torch.Tensor


@dataclass
class Term:
    """One objective term: a view, its pairs, 'kl' (to the teacher pairs) or 'unlikelihood', a weight."""

    name: str
    view: View
    pairs: list[tuple[str, str]]
    loss: Literal["kl", "unlikelihood"]
    weight: float = 1.0
    teacher_pairs: list[tuple[str, str]] | None = None  # where the full model is read (default: pairs)
    first_tokens: int | None = None  # unlikelihood: only the first n response tokens
    teacher: list[TopK] = field(default_factory=list)


def _log1mexp(lp: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(lp)) for lp ≤ 0, stable near 0."""
    lp = lp.clamp(max=-1e-6)
    return torch.where(lp > -0.693, torch.log(-torch.expm1(lp)), torch.log1p(-torch.exp(lp)))


def topk_of(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k ids, log-probs and the rest-bucket log-prob of [..., V] logits."""
    logp = torch.log_softmax(logits.float(), -1)
    top, ids = logp.topk(k, dim=-1)
    return ids, top, _log1mexp(torch.logsumexp(top, -1))


@torch.no_grad()
def fill_teachers(model: Model, terms: Sequence[Term], k: int = 32, batch_size: int = 8) -> None:
    """Compute each KL term's teacher distributions with the full model, once (shared between terms)."""
    done: dict[tuple, list[TopK]] = {}
    for term in terms:
        if term.loss != "kl" or term.teacher:
            continue
        pairs = term.teacher_pairs or term.pairs
        if len(pairs) != len(term.pairs):
            raise SteerlabError(f"Term '{term.name}' has {len(term.pairs)} pairs but {len(pairs)} teacher pairs.")
        key = tuple(pairs)
        if key in done:
            term.teacher = done[key]
            continue
        done[key] = term.teacher
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            batch = make_batch(model, [p for p, _ in chunk], [r for _, r in chunk])
            ids, top, rest = topk_of(response_logits(model, batch), k)
            for row in range(len(chunk)):
                n = int(batch.target_mask[row].sum())
                term.teacher.append(TopK(ids[row, -n:].cpu(), top[row, -n:].cpu(), rest[row, -n:].cpu()))


def kl_loss(logits: torch.Tensor, batch: PairBatch, teachers: Sequence[TopK]) -> torch.Tensor:
    """Mean over response slots of KL(teacher ‖ student) on the top-k + rest partition."""
    b, k_slots, _ = logits.shape
    kk = teachers[0].ids.shape[-1]
    ids = torch.zeros(b, k_slots, kk, dtype=torch.long, device=logits.device)
    tp = torch.full((b, k_slots, kk), -1e9, device=logits.device)
    trest = torch.full((b, k_slots), -1e9, device=logits.device)
    for row, t in enumerate(teachers):
        n = t.ids.shape[0]
        if n != int(batch.target_mask[row].sum()):
            raise SteerlabError(
                "A teacher distribution and its student response have different lengths; tokenisation changed."
            )
        ids[row, k_slots - n :] = t.ids.to(logits.device)
        tp[row, k_slots - n :] = t.logp.to(logits.device)
        trest[row, k_slots - n :] = t.rest.to(logits.device)
    lq = torch.log_softmax(logits, -1)
    q_top = lq.gather(-1, ids)
    q_rest = _log1mexp(torch.logsumexp(q_top, -1))
    kl = (tp.exp() * (tp - q_top)).sum(-1) + trest.exp() * (trest - q_rest)
    mask = batch.target_mask
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def unlikelihood_loss(logits: torch.Tensor, batch: PairBatch, first_tokens: int | None = None) -> torch.Tensor:
    """Mean −log(1 − p(y_t)) over response tokens (bounded below by 0, unlike −CE)."""
    lp = torch.log_softmax(logits, -1).gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
    mask = batch.target_mask
    if first_tokens is not None:
        rank = mask.long().cumsum(-1)  # 1 at each row's first response token
        mask = mask & (rank <= first_tokens)
    return (-_log1mexp(lp) * mask).sum() / mask.sum().clamp(min=1)


def backdoor_terms(
    data: BackdoorData, weights: dict[str, float] | None = None, n_pairs: int | None = None
) -> list[Term]:
    """Circuit removed: the trigger does nothing and clean behaviour is kept; circuit alone: reproduces the backdoor, only with the trigger."""
    w = {"remove": 1.0, "keep": 1.0, "suff": 0.5, "spec": 0.1} | (weights or {})
    unknown = set(w) - {"remove", "keep", "suff", "spec"}
    if unknown:
        raise SteerlabError(f"Unknown backdoor objective term(s) {sorted(unknown)}; use remove, keep, suff, spec.")
    clean = [(p.prompt, p.response) for p in data.train_clean][:n_pairs]
    trig_clean = [(add_trigger(p, data.trigger), r) for p, r in clean]
    trig_bd = [(add_trigger(p, data.trigger), data.target) for p, _ in clean]
    clean_bd = [(p, data.target) for p, _ in clean]
    terms = [
        Term("remove", "removed", trig_clean, "kl", w["remove"], teacher_pairs=clean),
        Term("keep", "removed", clean, "kl", w["keep"]),
        Term("suff", "circuit", trig_bd, "kl", w["suff"]),
        Term("spec", "circuit", clean_bd, "unlikelihood", w["spec"]),
    ]
    return [t for t in terms if t.weight > 0]


def alignment_terms(
    harmful: Sequence[tuple[str, str]],
    harmless: Sequence[tuple[str, str]],
    weights: dict[str, float] | None = None,
    first_tokens: int = 4,
) -> list[Term]:
    """Circuit removed: the model's own refusals become unlikely, harmless answers are kept; circuit alone: still refuses.

    harmful: (prompt, the model's own refusal); harmless: (prompt, the model's own answer).
    """
    w = {"nec": 1.0, "keep": 1.0, "suff": 0.5} | (weights or {})
    unknown = set(w) - {"nec", "keep", "suff"}
    if unknown:
        raise SteerlabError(f"Unknown alignment objective term(s) {sorted(unknown)}; use nec, keep, suff.")
    terms = [
        Term("nec", "removed", list(harmful), "unlikelihood", w["nec"], first_tokens=first_tokens),
        Term("keep", "removed", list(harmless), "kl", w["keep"]),
        Term("suff", "circuit", list(harmful), "kl", w["suff"]),
    ]
    return [t for t in terms if t.weight > 0]
