"""Per-latent steering strength by probabilistic bisection (Waeber, Frazier & Henderson 2011).

Goal: the boost b* at which the mean judge first-attempt score equals the target. Each step measures
the score at the posterior median; a Beta model of that noisy score says how sure we are that b* is
left or right of it, and the posterior on a grid is updated in log space. All latents of a run step
together, so each step is one batched, heterogeneous generation (every row its own latent and boost).

The final estimate differs from the original: per-trial first scores are nearly all-or-nothing, so a
few noisy steps leave the posterior median off the root. Two estimators use every trial measured:
- "logistic" (the default): one curve per latent, score = 100·sigmoid(−s·(log boost − m)), with its own
  midpoint m but a slope s shared by all latents of the run, fitted to every trial of every latent; each
  latent's threshold is where its curve crosses the target. Sharing the slope pools the run's trials, so a
  latent's 24-40 noisy trials estimate one number (its midpoint) instead of a whole curve. The fit is
  refined with a check's trials; then all thresholds move by one common step from a pooled check shrunk
  toward the fit, and the last check, at the final thresholds, is what is reported.
- "isotonic": a decreasing isotonic curve per latent, where it crosses the target; a final check off by
  more than `tolerance` is corrected.
Only when the measurements never bracket the target do we keep the posterior median (recorded in `estimate`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from steerlab.errors import SteerlabError
from steerlab.paths import write_json

ESTIMATORS = ("logistic", "isotonic", "median")


@dataclass(frozen=True)
class CalibrationSettings:
    """The search: target in 0-100 (default 30), steps, prompts per step, bounds and Gaussian prior."""

    target: float = 30.0
    steps: int = 8
    prompts_per_step: int = 2
    lower: float = 0.0
    upper: float = 100.0
    prior_mean: float | None = None
    prior_std: float | None = None
    confidence_weight: float = 5.0
    grid: int = 10_000
    verify_prompts: int = 0  # prompts for the final check at the threshold (0 = 2 × prompts_per_step)
    estimator: str = "logistic"  # "logistic" (shared-slope fit), "isotonic" (per latent) or "median" (the original's)
    tolerance: float = 8.0  # isotonic: a final check off the target by more than this is corrected (0 = no correction)
    corrections: int = 2  # isotonic: correction rounds; logistic: checks, each but the last refining the fit
    pooled_rounds: int = 1  # logistic: pooled steps after the checks, each followed by a check of every latent
    fit_error_sd: float = 6.0  # logistic: prior SD (score points) of the fit's error at the thresholds, for the step

    def __post_init__(self) -> None:
        if not 0.0 < self.target < 100.0:
            raise SteerlabError(f"The calibration target must lie strictly between 0 and 100; got {self.target:g}.")
        if self.steps < 1 or self.prompts_per_step < 1:
            raise SteerlabError("Calibration needs at least one step and one prompt per step.")
        if not self.upper > self.lower:
            raise SteerlabError(
                f"The calibration upper bound ({self.upper:g}) must exceed the lower bound ({self.lower:g})."
            )
        if self.pooled_rounds < 0 or not (math.isfinite(self.fit_error_sd) and self.fit_error_sd >= 0):
            raise SteerlabError("Calibration pooled_rounds and fit_error_sd must be finite and at least 0.")
        if self.estimator not in ESTIMATORS:
            raise SteerlabError(
                f"The calibration estimator must be one of {', '.join(ESTIMATORS)}; got '{self.estimator}'."
            )

    @property
    def n_verify(self) -> int:
        return self.verify_prompts or 2 * self.prompts_per_step


class Bisection:
    """The posterior over the root on a grid; `median()` is where to measure next."""

    def __init__(
        self,
        lower: float,
        upper: float,
        prior_mean: float | None = None,
        prior_std: float | None = None,
        n: int = 10_000,
    ):
        self.grid = np.linspace(lower, upper, n)
        if prior_mean is not None and prior_std:
            self.logp = -0.5 * ((self.grid - prior_mean) / prior_std) ** 2
        else:
            self.logp = np.zeros(n)
        self.logp -= self.logp.max()

    def median(self) -> float:
        p = np.exp(self.logp - self.logp.max())
        cdf = np.cumsum(p) / p.sum()
        return float(self.grid[int(np.searchsorted(cdf, 0.5))])

    @staticmethod
    def confidence(score: float, target: float, weight: float = 5.0) -> tuple[int, float]:
        """(direction, p): +1 means 'root to the right' (score still too high, boost more), with confidence p ≥ 0.5."""
        from scipy.stats import beta

        y = 1 if score >= target else -1
        a, b = 0.5 + weight * score, 0.5 + weight * (1.0 - score)
        below = float(beta.cdf(target, a, b))
        p = 1.0 - below if y == 1 else below
        if p < 0.5:
            y, p = -y, 1.0 - p
        return y, min(max(p, 0.5), 1.0 - 1e-9)

    def update(self, x: float, score: float, target: float, weight: float = 5.0) -> None:
        """Bayes update after measuring `score` (0-1) at boost x against `target` (0-1)."""
        y, p = self.confidence(score, target, weight)
        idx = int(np.searchsorted(self.grid, x))
        right = np.arange(len(self.grid)) > idx
        left = np.arange(len(self.grid)) < idx
        lp, lq = math.log(p), math.log(1.0 - p)
        self.logp[right] += lp if y == 1 else lq
        self.logp[left] += lq if y == 1 else lp
        if idx < len(self.grid):
            self.logp[idx] += 0.5 * (lp + lq)
        self.logp -= self.logp.max()


@dataclass
class Threshold:
    """A calibrated latent: its boost, the mean first score measured there (0-100), and the search history."""

    latent: int
    threshold: float
    achieved: float
    saturated: bool
    history: list[tuple[float, float]] = field(default_factory=list)
    estimate: str = "median"  # how `threshold` was obtained: "logistic", "isotonic" or "median"
    samples: list[tuple[float, float]] = field(default_factory=list)  # every (boost, trial first score) of the search
    degenerate: float | None = None  # share of degenerate answers (loops, number runs, non-words) in the final check
    degenerate_kinds: dict[str, int] = field(default_factory=dict)
    corrections: int = 0  # correction rounds the final check needed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Threshold":
        data = dict(data)
        for name in ("history", "samples"):
            data[name] = [tuple(h) for h in data.get(name, [])]
        return cls(**data)


Measure = Callable[
    [dict[int, float], int], dict[int, list[float]]
]  # ({latent: boost}, n prompts) -> per-trial first scores


def decreasing_isotonic(points: Sequence[tuple[float, float]]) -> list[tuple[float, float, int]]:
    """Pool-adjacent-violators fit of a non-increasing curve: blocks of (mean boost, mean score, n), by boost."""
    blocks: list[list[float]] = []  # [sum boost, sum score, n]
    for x, y in sorted(points):
        blocks.append([x, y, 1])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] < blocks[-1][1] / blocks[-1][2]:
            last = blocks.pop()
            for i in range(3):
                blocks[-1][i] += last[i]
    return [(b[0] / b[2], b[1] / b[2], int(b[2])) for b in blocks]


def isotonic_root(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """The boost where the decreasing fit crosses `target` (linear between block centres); None if not bracketed."""
    blocks = decreasing_isotonic(points)
    for (x0, y0, _), (x1, y1, _) in zip(blocks, blocks[1:]):
        if y0 >= target > y1:
            return x0 + (y0 - target) / (y0 - y1) * (x1 - x0)
    return None


def shared_slope_fit(
    samples: dict[int, Sequence[tuple[float, float]]], target: float, lower: float, upper: float
) -> tuple[dict[int, float | None], float]:
    """Each latent's boost where its fitted curve crosses `target` (0-100); None where the fit cannot place it.

    The curve is score = 100·sigmoid(−s·(log boost − m_latent)): a midpoint per latent and one slope s > 0 for
    all, fitted by maximum likelihood with each score/100 as a soft label. A root outside [lower, upper], or a
    latent whose trials never fall on both sides of the target, gives None (the caller keeps another estimate).

    Args:
        samples: per latent, every (boost, first score 0-100) measured.
        target: the score to cross, strictly between 0 and 100.
        lower: the search's lower bound; boosts at or below a small floor above it are clipped to the floor.
        upper: the search's upper bound.

    Returns:
        ({latent: boost or None}, the fitted slope s).
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    lats = [lat for lat in samples if samples[lat]]
    if not lats:
        return {lat: None for lat in samples}, 5.0
    floor = max(lower, 1e-3 * upper)
    x = np.array([math.log(max(b, floor)) for lat in lats for b, _ in samples[lat]])
    y = np.clip(np.array([v / 100.0 for lat in lats for _, v in samples[lat]]), 0.0, 1.0)
    owner = np.array([i for i, lat in enumerate(lats) for _ in samples[lat]])
    start = []
    for lat in lats:
        root = isotonic_root(samples[lat], 50.0)
        start.append(math.log(max(root if root is not None else float(np.median([b for b, _ in samples[lat]])), floor)))

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        mids, slope = theta[:-1], math.exp(theta[-1])
        z = -slope * (x - mids[owner])
        p = expit(z)
        loss = -float(np.sum(y * np.log(np.clip(p, 1e-12, 1.0)) + (1 - y) * np.log(np.clip(1 - p, 1e-12, 1.0))))
        dz = p - y  # d loss / d z
        grad = np.zeros_like(theta)
        np.add.at(grad, owner, dz * slope)
        grad[-1] = float(np.sum(dz * -(x - mids[owner]))) * slope
        return loss, grad

    log_lo, log_hi = math.log(floor) - 3.0, math.log(upper) + 3.0
    fit = minimize(
        nll,
        np.array(start + [math.log(5.0)]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(log_lo, log_hi)] * len(lats) + [(math.log(0.05), math.log(200.0))],
    )
    mids, slope = fit.x[:-1], math.exp(fit.x[-1])
    logit = math.log(target / (100.0 - target))
    out: dict[int, float | None] = {lat: None for lat in samples}
    for i, lat in enumerate(lats):
        scores = [v for _, v in samples[lat]]
        bracketed = max(scores) >= target > min(scores)
        root = math.exp(mids[i] - logit / slope)
        out[lat] = root if bracketed and lower <= root <= upper else None
    return out, slope


def calibrate(
    latents: Sequence[int],
    measure: Measure,
    settings: CalibrationSettings,
    on_step: Callable[[int], None] | None = None,
) -> dict[int, Threshold]:
    """Search every latent's threshold at once; `measure` runs one batched generation + grading per call.

    Args:
        latents: the SAE latents to calibrate.
        measure: ({latent: boost}, n prompts) -> {latent: per-trial first scores 0-100}, one batch per call.
        settings: target, search steps and bounds, estimator and final checks.
        on_step: called after each search step with its index (progress).

    Returns:
        {latent: Threshold}, with the final check's mean first score as `achieved`.
    """
    searches = {
        lat: Bisection(settings.lower, settings.upper, settings.prior_mean, settings.prior_std, settings.grid)
        for lat in latents
    }
    history: dict[int, list[tuple[float, float]]] = {lat: [] for lat in latents}
    samples: dict[int, list[tuple[float, float]]] = {lat: [] for lat in latents}
    for step in range(settings.steps):
        boosts = {lat: s.median() for lat, s in searches.items()}
        scores = measure(boosts, settings.prompts_per_step)
        for lat, s in searches.items():
            mean = sum(scores[lat]) / len(scores[lat])
            s.update(boosts[lat], mean / 100.0, settings.target / 100.0, settings.confidence_weight)
            history[lat].append((round(boosts[lat], 4), round(mean, 2)))
        _add_samples(samples, boosts, scores)
        if on_step:
            on_step(step)
    final, how = _estimate(samples, searches, settings)
    rounds = {lat: 0 for lat in latents}
    if settings.estimator == "logistic":
        achieved, texts = _logistic_checks(measure, samples, searches, settings, final, how, rounds)
    else:
        achieved, texts = _isotonic_checks(measure, samples, settings, final, rounds)
    span = settings.upper - settings.lower
    out: dict[int, Threshold] = {}
    for lat in latents:
        kinds = _kinds(texts.get(lat, []))
        out[lat] = Threshold(
            lat,
            final[lat],
            round(_mean(achieved[lat]), 2),
            saturated=min(final[lat] - settings.lower, settings.upper - final[lat]) < 0.02 * span,
            history=history[lat],
            estimate=how[lat],
            samples=samples[lat],
            degenerate=round(sum(kinds.values()) / len(texts[lat]), 3) if texts.get(lat) else None,
            degenerate_kinds=kinds,
            corrections=rounds[lat],
        )
    return out


def _estimate(
    samples: dict[int, list[tuple[float, float]]], searches: dict[int, Bisection], settings: CalibrationSettings
) -> tuple[dict[int, float], dict[int, str]]:
    """({latent: boost}, {latent: how}) from the samples so far, the posterior median where the estimator fails."""
    if settings.estimator == "logistic":
        roots, _ = shared_slope_fit(samples, settings.target, settings.lower, settings.upper)
    elif settings.estimator == "isotonic":
        roots = {lat: isotonic_root(pts, settings.target) for lat, pts in samples.items()}
    else:
        roots = {lat: None for lat in samples}
    final: dict[int, float] = {}
    how: dict[int, str] = {}
    for lat, s in searches.items():
        root = roots[lat]
        final[lat], how[lat] = (
            (round(root, 2), settings.estimator) if root is not None else (round(s.median(), 2), "median")
        )
    return final, how


def _logistic_checks(measure, samples, searches, settings, final, how, rounds):
    """Check every latent at its threshold `corrections` times (at least once); each check but the last joins the
    samples and the fit is redone, so the last check is measured at the final thresholds.

    Then the pooled step: the mean of the last check over all latents is an unbiased but noisy reading of where
    the run lands, while the fit is precise but can be biased when the curves are not logistic (the ESR
    organism's are not). The two are combined by their variances (`fit_error_sd` against the check's standard
    error), every threshold moves by one common factor toward the combined estimate's target (the fitted slope
    turns the miss into a step in log boost), and all are checked again; `pooled_rounds` times.
    """
    checks = max(1, settings.corrections)
    for i in range(checks):
        achieved = measure(dict(final), settings.n_verify)
        texts = dict(getattr(measure, "last_texts", {}) or {})
        _add_samples(samples, final, achieved)
        if i < checks - 1:
            refit, refit_how = _estimate(samples, searches, settings)
            for lat in final:
                rounds[lat] += int(refit[lat] != final[lat])
            final.update(refit)
            how.update(refit_how)
    for _ in range(settings.pooled_rounds):
        step = pooled_step(achieved, samples, settings)
        if step == 0.0:
            break
        for lat in final:
            final[lat] = round(min(max(final[lat] * math.exp(step), settings.lower), settings.upper), 2)
            rounds[lat] += 1
        achieved = measure(dict(final), settings.n_verify)
        texts = dict(getattr(measure, "last_texts", {}) or {})
        _add_samples(samples, final, achieved)
    return achieved, texts


def pooled_step(
    achieved: dict[int, Sequence[float]],
    samples: dict[int, Sequence[tuple[float, float]]],
    settings: CalibrationSettings,
) -> float:
    """The common step in log boost toward the target, from the pooled check shrunk toward the fit's prediction.

    At the thresholds the fit predicts the target; the check reads `pooled` with standard error `se`. Their
    precision-weighted mean misses the target by w·(pooled − target), w = fit_error_sd² / (fit_error_sd² + se²),
    and the step undoes that miss along the fitted curve.

    Args:
        achieved: the last check's first scores per latent, all measured at the current thresholds.
        samples: every (boost, score) so far, for the slope of the shared fit.
        settings: the target and bounds.

    Returns:
        The step (negative: weaker steering, to raise the score); 0.0 with fewer than two scores.
    """
    scores = [v for vs in achieved.values() for v in vs]
    if len(scores) < 2:
        return 0.0
    pooled = float(np.mean(scores))
    se = float(np.std(scores, ddof=1)) / math.sqrt(len(scores))
    weight = settings.fit_error_sd**2 / (settings.fit_error_sd**2 + se**2) if settings.fit_error_sd > 0 else 0.0
    _, slope = shared_slope_fit(samples, settings.target, settings.lower, settings.upper)
    p = settings.target / 100.0
    return weight * (pooled - settings.target) / (100.0 * slope * p * (1.0 - p))


def _add_samples(samples, boosts, scores) -> None:
    for lat, vs in scores.items():
        samples[lat] += [(round(boosts[lat], 4), round(v, 2)) for v in vs]


def _isotonic_checks(measure, samples, settings, final, rounds):
    """A separate check at each threshold; a check off by more than `tolerance` is corrected and checked again."""
    latents = list(final)
    achieved = measure(final, settings.n_verify)
    texts = dict(getattr(measure, "last_texts", {}) or {})
    for _ in range(settings.corrections if settings.tolerance > 0 else 0):
        off = [lat for lat in latents if abs(_mean(achieved[lat]) - settings.target) > settings.tolerance]
        if not off:
            break
        retry: dict[int, float] = {}
        _add_samples(samples, final, {lat: achieved[lat] for lat in off})
        for lat in off:
            retry[lat] = _corrected(samples[lat], final[lat], _mean(achieved[lat]), settings)
            final[lat] = retry[lat]
            rounds[lat] += 1
        again = measure(retry, settings.n_verify)
        achieved.update(again)
        texts.update(getattr(measure, "last_texts", {}) or {})
    return achieved, texts


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _kinds(texts: Sequence[str]) -> dict[str, int]:
    from steerlab.esr.fluency import degeneration

    kinds: dict[str, int] = {}
    for t in texts:
        k = degeneration(t)
        if k is not None:
            kinds[k] = kinds.get(k, 0) + 1
    return kinds


def _corrected(
    points: Sequence[tuple[float, float]], boost: float, achieved: float, settings: CalibrationSettings
) -> float:
    """A new boost after a missed check: the isotonic root of all samples, else a step in the right direction."""
    root = isotonic_root(points, settings.target)
    if root is not None and abs(root - boost) > 1e-6:
        return round(min(max(root, settings.lower), settings.upper), 2)
    step = 0.25 * max(boost - settings.lower, 0.05 * (settings.upper - settings.lower))
    new = boost + step if achieved > settings.target else boost - step
    return round(min(max(new, settings.lower), settings.upper), 2)


class ThresholdCache:
    """Thresholds in one JSON file, keyed by a hash of the whole calibration config plus the latent."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @staticmethod
    def key(config: dict, latent: int) -> str:
        blob = json.dumps({"config": config, "latent": int(latent)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _load(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError:
            return {}

    def get(self, config: dict, latent: int) -> Threshold | None:
        data = self._load().get(self.key(config, latent))
        if data is None:
            return None
        return Threshold.from_dict(data["threshold"])

    def put(self, config: dict, items: Sequence[Threshold]) -> None:
        data = self._load()
        for t in items:
            data[self.key(config, t.latent)] = {"config": config, "threshold": t.to_dict()}
        write_json(self.path, data, indent=1, sort_keys=True)
