"""Per-latent steering strength by probabilistic bisection (Waeber, Frazier & Henderson 2011).

Goal: the boost b* at which the mean judge first-attempt score equals the target. Each step measures
the score at the posterior median; a Beta model of that noisy score says how sure we are that b* is
left or right of it, and the posterior on a grid is updated in log space. All latents of a run step
together, so each step is one batched, heterogeneous generation (every row its own latent and boost).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from steerlab.errors import SteerlabError


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

    def __post_init__(self) -> None:
        if not 0.0 < self.target < 100.0:
            raise SteerlabError(f"The calibration target must lie strictly between 0 and 100; got {self.target:g}.")
        if self.steps < 1 or self.prompts_per_step < 1:
            raise SteerlabError("Calibration needs at least one step and one prompt per step.")
        if not self.upper > self.lower:
            raise SteerlabError(f"The calibration upper bound ({self.upper:g}) must exceed the lower bound ({self.lower:g}).")


class Bisection:
    """The posterior over the root on a grid; `median()` is where to measure next."""

    def __init__(self, lower: float, upper: float, prior_mean: float | None = None, prior_std: float | None = None, n: int = 10_000):
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

    def to_dict(self) -> dict:
        return asdict(self)


Measure = Callable[[dict[int, float]], dict[int, float]]  # {latent: boost} -> {latent: mean first score 0-100}


def calibrate(latents: Sequence[int], measure: Measure, settings: CalibrationSettings,
              on_step: Callable[[int], None] | None = None) -> dict[int, Threshold]:
    """Search every latent's threshold at once; `measure` runs one batched generation + grading per call."""
    searches = {lat: Bisection(settings.lower, settings.upper, settings.prior_mean, settings.prior_std, settings.grid) for lat in latents}
    history: dict[int, list[tuple[float, float]]] = {lat: [] for lat in latents}
    for step in range(settings.steps):
        boosts = {lat: s.median() for lat, s in searches.items()}
        scores = measure(boosts)
        for lat, s in searches.items():
            s.update(boosts[lat], scores[lat] / 100.0, settings.target / 100.0, settings.confidence_weight)
            history[lat].append((round(boosts[lat], 4), round(scores[lat], 2)))
        if on_step:
            on_step(step)
    final = {lat: round(s.median(), 2) for lat, s in searches.items()}
    achieved = measure(final)  # verification with the same number of prompts as a search step
    span = settings.upper - settings.lower
    return {
        lat: Threshold(lat, final[lat], round(achieved[lat], 2),
                       saturated=min(final[lat] - settings.lower, settings.upper - final[lat]) < 0.02 * span,
                       history=history[lat])
        for lat in latents
    }


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
        data = dict(data["threshold"])
        data["history"] = [tuple(h) for h in data.get("history", [])]
        return Threshold(**data)

    def put(self, config: dict, items: Sequence[Threshold]) -> None:
        data = self._load()
        for t in items:
            data[self.key(config, t.latent)] = {"config": config, "threshold": t.to_dict()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
