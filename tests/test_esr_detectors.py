"""Detector discovery maths and the matched random-latent control, by hand."""

import math

import pytest
import torch

from steerlab.esr.detectors import contrast, derangement, latent_activity, matched_random_sets
from steerlab.stats import auc


def test_derangement_has_no_fixed_point():
    for seed in range(20):
        perm = derangement(5, seed)
        assert sorted(perm) == list(range(5)) and all(i != p for i, p in enumerate(perm))


def test_contrast_picks_the_separating_latent():
    normal = torch.zeros(6, 3)
    shuffled = torch.zeros(6, 3)
    shuffled[:, 1] = torch.tensor([1.0, 2.0, 1.5, 2.5, 1.0, 3.0])  # fires only off topic
    normal[:, 2] = shuffled[:, 2] = 1.0  # fires everywhere
    out = contrast(normal, shuffled, n=4, min_auc=0.7)
    assert out["detectors"] == [1] and out["strict_rule"] == [1]


def test_latent_activity_over_answer_tokens_only():
    a = torch.tensor([[9.0, 0.0], [1.0, 0.0], [3.0, 2.0]])  # row 0 is a prompt token
    out = latent_activity([a], [1])
    assert out["n_tokens"] == 2
    assert out["frequency"] == [1.0, 0.5] and out["mean_active"] == [2.0, 2.0]


def test_matched_sets_are_nearer_than_chance_and_disjoint():
    freq = [10 ** (-1 - 3 * i / 99) for i in range(100)]  # log-spaced frequencies
    mag = [1.0 + (i % 10) for i in range(100)]
    activity = {"frequency": freq, "mean_active": mag}
    detectors = [5, 50, 90]
    sets = matched_random_sets(detectors, activity, k=3, seed=0)
    flat = [i for s in sets for i in s]
    assert len(flat) == len(set(flat)) == 9 and not set(flat) & set(detectors)

    def dist(i, j):
        return math.dist((math.log(freq[i]), math.log(mag[i])), (math.log(freq[j]), math.log(mag[j])))

    matched = sum(dist(d, s[n]) for s in sets for n, d in enumerate(detectors)) / 9
    chance = sum(dist(d, j) for d in detectors for j in range(100) if j not in detectors) / (3 * 97)
    assert matched < 0.3 * chance
    with pytest.raises(ValueError):
        matched_random_sets(detectors, {"frequency": [0.0] * 99 + [0.1], "mean_active": [1.0] * 100}, k=1, seed=0)


def test_chance_auc_is_beaten_only_by_a_real_detector():
    from steerlab.esr.detectors import chance_auc

    gen = torch.Generator().manual_seed(1)
    normal, shuffled = torch.rand(30, 400, generator=gen), torch.rand(90, 400, generator=gen)
    level = chance_auc(normal, shuffled, n_perm=10)
    assert 0.6 < level < 0.85  # many noise columns: some look separating by chance
    assert float(auc(shuffled, normal).max()) < level + 0.05  # pure noise does not clear it by much
    shuffled[:, 7] += 1.0  # a planted detector
    assert float(auc(shuffled, normal)[7]) > level
