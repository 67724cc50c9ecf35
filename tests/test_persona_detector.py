"""Detector metrics: AUROC against hand-computed values (ties count half), the ROC curve, the earliest separating fraction."""

from __future__ import annotations

import random

import pytest

from steerlab.errors import SteerlabError
from steerlab.persona.detector import auroc, detect, earliest, roc_curve


@pytest.mark.parametrize(
    "pos, neg, expected",
    [
        ([3, 4], [1, 2], 1.0),  # perfect separation
        ([1], [2], 0.0),  # perfectly wrong
        ([1, 2], [2, 3], 0.125),  # pairs: 0 + 0 + 0.5 (tie) + 0 = 0.5 of 4
        ([0.8, 0.4, 0.6], [0.5, 0.4, 0.1], 7.5 / 9),  # 3 + (0 + 0.5 + 1) + 3 wins of 9 pairs
        ([1, 1], [1], 0.5),  # all tied
        ([5, 1, 5], [5, 0], 4.0 / 6),  # (5: tie, win) x2 = 3, (1: loss, win) = 1 -> 4 of 6
    ],
)
def test_auroc_hand_computed(pos, neg, expected):
    assert auroc(pos, neg) == pytest.approx(expected)


def test_auroc_equals_pair_count_and_roc_area():
    rng = random.Random(0)
    for _ in range(20):
        pos = [rng.choice([0, 1, 2, 3, 4]) + rng.random() * (rng.random() < 0.5) for _ in range(rng.randint(1, 9))]
        neg = [rng.choice([0, 1, 2, 3]) + 0.0 for _ in range(rng.randint(1, 9))]
        pairs = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
        fpr, tpr = roc_curve(pos, neg)
        area = sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(fpr) - 1))
        assert auroc(pos, neg) == pytest.approx(pairs) == pytest.approx(area)
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)


def test_roc_curve_hand_computed():
    assert roc_curve([2, 1], [1, 0]) == ([0.0, 0.0, 0.5, 1.0], [0.0, 0.5, 1.0, 1.0])


def test_auroc_needs_both_classes():
    with pytest.raises(SteerlabError, match="positive and one negative"):
        auroc([], [1.0])


def test_detect_earliest_fraction_latent_before_judge():
    clean = [0.0, 0.1, -0.1, 0.05]
    scores = {0.0: clean, 0.1: [0.2, 0.3, 0.25, 0.4], 0.5: [1.0, 1.1, 0.9, 1.2], 1.0: [2.0, 2.1, 1.9, 2.2]}
    judge = {0.0: [0, 0, 0, 0], 0.1: [0, 0, 0, 0], 0.5: [0, 100, 0, 0], 1.0: [100, 100, 100, 75]}
    rates = {0.0: 0.0, 0.1: 0.0, 0.5: 0.25, 1.0: 1.0}
    d = detect(7, scores, judge, rates, threshold=0.9)
    assert [r.fraction for r in d.fractions] == [0.1, 0.5, 1.0]
    assert [r.latent_auroc for r in d.fractions] == [1.0, 1.0, 1.0]
    assert [r.judge_auroc for r in d.fractions] == [0.5, 0.625, 1.0]
    assert d.earliest_latent == 0.1 and d.earliest_judge == 1.0
    assert d.fractions[0].mean_shift == pytest.approx(0.2875 - 0.0125)
    assert d.clean_scores == clean
    assert earliest([(0.5, 0.95), (0.1, 0.5), (1.0, None)], 0.9) == 0.5
    assert earliest([(0.5, 0.5)], 0.9) is None
    with pytest.raises(SteerlabError, match="clean organism"):
        detect(7, {0.5: [1.0]}, {}, {})
