"""Cross-judge agreement on the same responses: score correlation, multi-attempt and ESR direction."""

from __future__ import annotations

from typing import Sequence

from steerlab.judges.types import Grade


def agreement(a: Sequence[Grade], b: Sequence[Grade]) -> dict[str, float | int | None]:
    """Compare two judges' grades of the same responses (paired by position).

    Pairs where either grade failed or has no attempt are skipped. Returns Pearson and Spearman r of
    first-attempt scores, the fraction agreeing on "more than one attempt", and, over responses both
    call multi-attempt, the fraction agreeing on whether the last attempt beats the first.
    """
    from scipy import stats

    if len(a) != len(b):
        raise ValueError(f"agreement needs paired grades; got {len(a)} and {len(b)}")
    pairs = [(x, y) for x, y in zip(a, b) if x.ok and y.ok and x.attempts and y.attempts]
    first_a = [x.first_score for x, _ in pairs]
    first_b = [y.first_score for _, y in pairs]
    both_multi = [(x, y) for x, y in pairs if x.n_attempts > 1 and y.n_attempts > 1]

    def corr(fn) -> float | None:
        if len(pairs) < 3 or len(set(first_a)) < 2 or len(set(first_b)) < 2:
            return None
        return float(fn(first_a, first_b)[0])

    return {
        "n_pairs": len(pairs),
        "n_skipped": len(a) - len(pairs),
        "pearson_first": corr(stats.pearsonr),
        "spearman_first": corr(stats.spearmanr),
        "mean_first_a": sum(first_a) / len(first_a) if first_a else None,
        "mean_first_b": sum(first_b) / len(first_b) if first_b else None,
        "multi_attempt_agreement": (sum((x.n_attempts > 1) == (y.n_attempts > 1) for x, y in pairs) / len(pairs))
        if pairs
        else None,
        "n_both_multi": len(both_multi),
        "direction_agreement": (
            sum(((x.last_score - x.first_score) > 0) == ((y.last_score - y.first_score) > 0) for x, y in both_multi)
            / len(both_multi)
            if both_multi
            else None
        ),
    }
