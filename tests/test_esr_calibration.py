"""Probabilistic bisection: the Beta confidence, the update, convergence on a known noisy response curve."""

import random

import pytest

from steerlab.errors import SteerlabError
from steerlab.esr.calibration import (
    Bisection,
    CalibrationSettings,
    Threshold,
    ThresholdCache,
    calibrate,
    decreasing_isotonic,
    isotonic_root,
    pooled_step,
    shared_slope_fit,
)


def test_confidence_direction():
    # score 0.9 >= target 0.3: root to the right (boost more), confident
    y, p = Bisection.confidence(0.9, 0.3)
    assert y == 1 and p > 0.9
    y, p = Bisection.confidence(0.05, 0.3)
    assert y == -1 and p > 0.7
    y, p = Bisection.confidence(0.3, 0.3)  # at the target: p flips to >= 0.5
    assert p >= 0.5


def test_update_moves_the_median():
    b = Bisection(0, 100)
    assert b.median() == pytest.approx(50, abs=0.02)
    b.update(50, 0.95, 0.3)  # score still high at 50 -> root is right of 50
    assert b.median() > 55
    c = Bisection(0, 100)
    c.update(50, 0.0, 0.3)
    assert c.median() < 45


def test_calibrate_converges_on_noisy_curve():
    # score(b) = 100 * exp(-b / 20): the 30-point root is b* = 20 ln(10/3) = 24.08
    import math

    rng = random.Random(0)

    def measure(boosts, n):
        return {
            lat: [max(0.0, min(100.0, 100 * math.exp(-b / (20 * lat)) + rng.gauss(0, 5))) for _ in range(n)]
            for lat, b in boosts.items()
        }

    settings = CalibrationSettings(target=30, steps=25, prompts_per_step=1, lower=0, upper=200)
    out = calibrate([1, 2], measure, settings)
    # the noise-free score at each found threshold lies near the target
    for lat in (1, 2):
        assert 18 <= 100 * math.exp(-out[lat].threshold / (20 * lat)) <= 42
    assert out[1].threshold < out[2].threshold
    assert len(out[1].history) == 25 and not out[1].saturated


def test_saturation_flag():
    out = calibrate([0], lambda boosts, n: {0: [100.0] * n}, CalibrationSettings(steps=12, lower=0, upper=10))
    assert (
        out[0].saturated and out[0].threshold > 9.5 and out[0].estimate == "median"
    )  # never bracketed: posterior median


def test_cache_is_keyed_by_config(tmp_path):
    cache = ThresholdCache(tmp_path / "t.json")
    t = Threshold(7, 12.5, 31.0, False, [(10.0, 40.0)])
    cache.put({"target": 30}, [t])
    assert cache.get({"target": 30}, 7) == t
    assert cache.get({"target": 50}, 7) is None and cache.get({"target": 30}, 8) is None


def test_settings_errors():
    with pytest.raises(SteerlabError, match="strictly between"):
        CalibrationSettings(target=0)
    with pytest.raises(SteerlabError, match="upper bound"):
        CalibrationSettings(lower=5, upper=5)


def test_decreasing_isotonic_pools_violators_by_hand():
    # (boost, score): 1->90, 2->40, 3->60 violates (40 < 60), pooled to 50 at boost 2.5; 4->0
    blocks = decreasing_isotonic([(3, 60), (1, 90), (2, 40), (4, 0)])
    assert blocks == [(1, 90, 1), (2.5, 50, 2), (4, 0, 1)]
    # crossing 30 lies between (2.5, 50) and (4, 0): 2.5 + (50 - 30) / 50 * 1.5 = 3.1
    assert isotonic_root([(3, 60), (1, 90), (2, 40), (4, 0)], 30) == pytest.approx(3.1)
    assert isotonic_root([(1, 90), (2, 80)], 30) is None  # never below the target: not bracketed


def test_isotonic_estimate_is_near_target_on_all_or_nothing_trials():
    """Trials score 95 (on topic) or 0 with P(on topic) = sigmoid((b0 - b) / 1.5), as SmolLM2's steered answers do."""
    import math

    rng = random.Random(1)
    b0 = {lat: 8.0 + lat for lat in range(24)}

    def p_on(lat, b):
        return 1 / (1 + math.exp(-(b0[lat] - b) / 1.5))

    def measure(boosts, n):
        return {lat: [95.0 if rng.random() < p_on(lat, b) else 0.0 for _ in range(n)] for lat, b in boosts.items()}

    settings = CalibrationSettings(
        target=30, steps=8, prompts_per_step=4, lower=0, upper=100, prior_mean=12, prior_std=25, estimator="isotonic"
    )
    out = calibrate(list(b0), measure, settings)
    true_scores = [95 * p_on(lat, t.threshold) for lat, t in out.items()]
    mean = sum(true_scores) / len(true_scores)
    assert 20 <= mean <= 40, mean
    assert sum(t.estimate == "isotonic" for t in out.values()) >= 20
    assert all(len(t.samples) >= 8 * 4 for t in out.values())  # the search's trials, plus any missed final checks


def test_threshold_round_trips_through_dict():
    t = Threshold(3, 1.5, 30.0, False, [(1.0, 50.0)], "isotonic", [(1.0, 95.0), (1.0, 5.0)])
    assert Threshold.from_dict(t.to_dict()) == t


def test_shared_slope_fit_recovers_planted_curves():
    """Noise-free soft scores on score = 100·sigmoid(-6·(log b - log m)): each latent's 30-point root is exact."""
    import math

    mids = {0: 8.0, 1: 12.0, 2: 20.0}
    samples = {
        lat: [(b, 100 / (1 + math.exp(6 * (math.log(b) - math.log(m))))) for b in (2, 4, 6, 8, 10, 14, 20, 30, 45)]
        for lat, m in mids.items()
    }
    roots, _ = shared_slope_fit(samples, 30.0, 0.0, 100.0)
    for lat, m in mids.items():
        assert roots[lat] == pytest.approx(m * math.exp(math.log(70 / 30) / 6), rel=0.02)
    # never below the target: not bracketed, no root; outside the bounds: no root
    assert shared_slope_fit({0: [(1.0, 90.0), (2.0, 80.0)]}, 30.0, 0.0, 100.0)[0] == {0: None}
    assert shared_slope_fit(samples, 30.0, 0.0, 9.0)[0][2] is None


def test_logistic_estimate_holds_the_target_on_all_or_nothing_trials():
    """The default estimator on steep, prompt-dependent all-or-nothing curves like SmolLM2's: the true mean score at
    the thresholds lands within 5 of the target, and the last check is measured at the final thresholds."""
    import math

    rng = random.Random(3)
    b0 = {lat: 8.0 * math.exp(0.05 * lat) for lat in range(12)}

    def p_on(lat, b, shift=0.0):
        return 1 / (1 + math.exp(7.4 * (math.log(b) - math.log(b0[lat]) - shift)))

    calls = []

    def measure(boosts, n):
        calls.append(dict(boosts))
        return {
            lat: [95.0 if rng.random() < p_on(lat, b, rng.gauss(0, 0.15)) else 0.0 for _ in range(n)]
            for lat, b in boosts.items()
        }

    settings = CalibrationSettings(
        target=30, steps=6, prompts_per_step=4, lower=0, upper=140, prior_mean=17, prior_std=35
    )
    assert settings.estimator == "logistic"
    out = calibrate(list(b0), measure, settings)
    true_scores = [95 * p_on(lat, t.threshold) for lat, t in out.items()]
    assert abs(sum(true_scores) / len(true_scores) - 30) <= 5, true_scores
    assert sum(t.estimate == "logistic" for t in out.values()) >= 10
    assert len(calls) == 6 + 2 + 1  # the search, two checks (the first refines the fit), the pooled step's check
    assert {lat: t.threshold for lat, t in out.items()} == calls[-1]  # achieved was measured at the final thresholds
    assert all(len(t.samples) == 6 * 4 + 3 * 8 for t in out.values())


def test_unknown_estimator_is_one_sentence():
    with pytest.raises(SteerlabError, match="logistic, isotonic, median"):
        CalibrationSettings(estimator="spline")


def test_pooled_step_is_the_check_shrunk_toward_the_fit():
    """A pooled check far below the target (steering too strong) gives a negative step in log boost sized by the
    fitted slope; a precise check moves almost all the way, a noisy one less (shrunk toward the fit)."""
    import math

    samples = {
        lat: [(b, 100 / (1 + math.exp(5 * (math.log(b) - math.log(10.0 + lat))))) for b in (4, 7, 10, 13, 18, 25)]
        for lat in range(4)
    }
    settings = CalibrationSettings(target=30, lower=0, upper=100)
    low = {lat: [0.0, 10.0, 20.0, 12.0, 18.0, 14.0, 16.0, 10.0] for lat in range(4)}  # pooled 12.5, SE ~1.1
    step = pooled_step(low, samples, settings)
    assert step == pytest.approx(0.97 * (12.5 - 30) / (100 * 5 * 0.3 * 0.7), rel=0.05)
    noisy = {lat: [0.0, 100.0, 0.0, 100.0, 0.0, 0.0, 100.0, 0.0] for lat in range(4)}  # pooled 37.5, SE ~8.8
    weight = 36 / (36 + 8.8**2)
    assert pooled_step(noisy, samples, settings) == pytest.approx(weight * 7.5 / (100 * 5 * 0.21), rel=0.1)
    assert pooled_step(noisy, samples, CalibrationSettings(target=30, lower=0, upper=100, fit_error_sd=0)) == 0.0
