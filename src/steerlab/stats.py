"""Rank statistics shared by the experiments: the ROC AUC (Mann-Whitney U), vectorised over columns."""

from __future__ import annotations

from typing import Sequence

import torch

from steerlab.errors import SteerlabError


def auc(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Per-column AUC of pos [n_pos, d] vs neg [n_neg, d]: P(pos > neg) + ½ P(tie), from mid-ranks.

    Memory is O(d·n), not O(d·n_pos·n_neg); the result is fp64 [d] (mid-rank sums are exact there).
    """
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    pos_t = pos.T.contiguous().double()
    ordered = torch.cat([pos, neg]).T.contiguous().double().sort(dim=1).values
    less = torch.searchsorted(ordered, pos_t, right=False)
    leq = torch.searchsorted(ordered, pos_t, right=True)
    rank_sum = ((less + leq + 1).double() / 2).sum(1)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auroc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The AUC of one score list against another: P(positive > negative) + 0.5 P(tie)."""
    if not len(positives) or not len(negatives):
        raise SteerlabError("AUROC needs at least one positive and one negative score.")
    column = lambda xs: torch.tensor([float(x) for x in xs], dtype=torch.float64).unsqueeze(1)  # noqa: E731
    return float(auc(column(positives), column(negatives))[0])
