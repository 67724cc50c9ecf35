"""ESR metrics with 95% CIs: Wilson for proportions, t for means, and a bootstrap that resamples latents.

Definitions follow the spec (§7): a trial is multi-attempt when the judge finds more than one
attempt; it is an ESR episode when it is multi-attempt and its last score beats its first by more
than `min_delta` (0 = strictly greater, the original rule). Trials of one latent are correlated, so
every metric also gets a cluster-bootstrap interval (latents resampled with replacement).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Callable, Hashable, Mapping, Sequence

from steerlab.judges.degeneration import is_degraded as is_degraded  # the spec's rule, shared with the judges

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Outcome:
    """One graded trial reduced to what the metrics need."""

    n_attempts: int
    first: float
    last: float
    cluster: Hashable = None  # the latent (trials of one latent are not independent)
    degraded: bool = False

    @property
    def multi(self) -> bool:
        return self.n_attempts > 1

    def esr(self, min_delta: float = 0.0) -> bool:
        return self.n_attempts > 1 and self.last - self.first > min_delta


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its 95% CI (Wilson or t) and its cluster-bootstrap CI; n = trials it is over."""

    value: float | None
    lo: float | None
    hi: float | None
    boot_lo: float | None
    boot_hi: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def fmt(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """'12.3% [4.5, 20.1]' style text with the wider (union) of the analytic and the cluster-bootstrap CIs.

        The union is conservative: a bootstrap over few latents collapses to [0, 0] at 0%, where Wilson does not.
        """
        if self.value is None:
            return "n/a"
        los = [x for x in (self.lo, self.boot_lo) if x is not None]
        his = [x for x in (self.hi, self.boot_hi) if x is not None]
        lo, hi = (min(los), max(his)) if los and his else (None, None)
        core = f"{self.value * scale:.{digits}f}{unit}"
        return core if lo is None else f"{core} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (well behaved at 0% and 100%)."""
    if n <= 0:
        raise ValueError("wilson needs n > 0")
    if not 0 <= k <= n:
        raise ValueError(f"wilson needs 0 <= k <= n; got k={k}, n={n}")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_ci(
    values: Sequence[float], bounds: tuple[float, float] | None = None
) -> tuple[float, float | None, float | None]:
    """Mean with a t-based 95% CI (None when fewer than two values), clipped to `bounds` when the scale has them."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return mean, None, None
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return mean, lo, hi


# --- the metric functions (each: outcomes -> value or None) --------------------------------------------
def multi_attempt_rate(o: Sequence[Outcome]) -> float | None:
    return sum(x.multi for x in o) / len(o) if o else None


def esr_rate(o: Sequence[Outcome], min_delta: float = 0.0) -> float | None:
    return sum(x.esr(min_delta) for x in o) / len(o) if o else None


def improvement_rate(o: Sequence[Outcome], min_delta: float = 0.0) -> float | None:
    multi = [x for x in o if x.multi]
    return sum(x.esr(min_delta) for x in multi) / len(multi) if multi else None


def mean_score_improvement(o: Sequence[Outcome]) -> float | None:
    deltas = [x.last - x.first for x in o if x.multi]
    return sum(deltas) / len(deltas) if deltas else None


def first_score(o: Sequence[Outcome]) -> float | None:
    return sum(x.first for x in o) / len(o) if o else None


def mean_attempts(o: Sequence[Outcome]) -> float | None:
    return sum(x.n_attempts for x in o) / len(o) if o else None


def cluster_bootstrap(
    outcomes: Sequence[Outcome], stat: Callable[[Sequence[Outcome]], float | None], n_boot: int = 2000, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile 95% CI of stat over resamples of whole clusters (latents); (None, None) if undefined."""
    groups: dict[Hashable, list[Outcome]] = {}
    for x in outcomes:
        groups.setdefault(x.cluster, []).append(x)
    keys = list(groups)
    if len(keys) < 2:
        return None, None
    rng = random.Random(seed)
    values = []
    for _ in range(n_boot):
        sample = [x for k in rng.choices(keys, k=len(keys)) for x in groups[k]]
        v = stat(sample)
        if v is not None:
            values.append(v)
    if len(values) < n_boot // 2:
        return None, None
    values.sort()
    return _quantile(values, 0.025), _quantile(values, 0.975)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(
    outcomes: Sequence[Outcome],
    *,
    min_delta: float = 0.0,
    n_boot: int = 2000,
    seed: int = 0,
    exclude_degraded: bool = False,
) -> dict[str, Estimate]:
    """Every headline metric with its analytic and cluster-bootstrap 95% CIs."""
    o = [x for x in outcomes if not (exclude_degraded and x.degraded)]
    multi = [x for x in o if x.multi]
    out: dict[str, Estimate] = {}

    def prop(name: str, k: int, n: int, fn: Callable) -> None:
        if n == 0:
            out[name] = Estimate(None, None, None, None, None, 0)
            return
        lo, hi = wilson(k, n)
        blo, bhi = cluster_bootstrap(o, fn, n_boot, seed)
        out[name] = Estimate(k / n, lo, hi, blo, bhi, n)

    def mean(name: str, values: list[float], fn: Callable, bounds: tuple[float, float] | None = None) -> None:
        if not values:
            out[name] = Estimate(None, None, None, None, None, 0)
            return
        m, lo, hi = mean_ci(values, bounds)
        blo, bhi = cluster_bootstrap(o, fn, n_boot, seed)
        out[name] = Estimate(m, lo, hi, blo, bhi, len(values))

    prop("multi_attempt_rate", len(multi), len(o), multi_attempt_rate)
    prop("esr_rate", sum(x.esr(min_delta) for x in o), len(o), lambda s: esr_rate(s, min_delta))
    prop("improvement_rate", sum(x.esr(min_delta) for x in multi), len(multi), lambda s: improvement_rate(s, min_delta))
    mean("mean_score_improvement", [x.last - x.first for x in multi], mean_score_improvement, (-100.0, 100.0))
    mean("first_score", [x.first for x in o], first_score, (0.0, 100.0))
    mean("mean_attempts", [float(x.n_attempts) for x in o], mean_attempts, (1.0, math.inf))
    out["degraded_rate"] = Estimate(
        sum(x.degraded for x in outcomes) / len(outcomes) if outcomes else None, None, None, None, None, len(outcomes)
    )
    return out


def relative_reduction(base: float | None, cond: float | None) -> float | None:
    """(base - cond) / base × 100; None when the baseline is 0 or missing."""
    if base is None or cond is None or base == 0:
        return None
    return (base - cond) / base * 100.0


def increase_factor(base: float | None, cond: float | None) -> float | None:
    """cond / base; None when the baseline is 0 or missing."""
    if base is None or cond is None or base == 0:
        return None
    return cond / base


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (base only) and c (condition only)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(
    base: Mapping[Hashable, Outcome],
    cond: Mapping[Hashable, Outcome],
    *,
    event: Callable[[Outcome], bool] = lambda x: x.esr(),
    n_boot: int = 2000,
    seed: int = 0,
) -> dict:
    """Paired test of an event (default: ESR) on trials matched by key (latent, prompt, seed).

    Returns the two rates, their difference with a cluster-bootstrap CI (latents resampled), the
    discordant counts and the exact McNemar p-value.
    """
    keys = [k for k in base if k in cond]
    if not keys:
        return {"n_pairs": 0}
    pairs = [(base[k], cond[k]) for k in keys]
    b = sum(event(x) and not event(y) for x, y in pairs)
    c = sum(event(y) and not event(x) for x, y in pairs)
    groups: dict[Hashable, list[tuple[Outcome, Outcome]]] = {}
    for x, y in pairs:
        groups.setdefault(x.cluster, []).append((x, y))

    def diff(sample: Sequence[tuple[Outcome, Outcome]]) -> float:
        return (sum(event(y) for _, y in sample) - sum(event(x) for x, _ in sample)) / len(sample)

    lo = hi = None
    if len(groups) >= 2:
        rng = random.Random(seed)
        gk = list(groups)
        vals = sorted(diff([p for k in rng.choices(gk, k=len(gk)) for p in groups[k]]) for _ in range(n_boot))
        lo, hi = _quantile(vals, 0.025), _quantile(vals, 0.975)
    return {
        "n_pairs": len(pairs),
        "base_rate": sum(event(x) for x, _ in pairs) / len(pairs),
        "cond_rate": sum(event(y) for _, y in pairs) / len(pairs),
        "difference": diff(pairs),
        "diff_lo": lo,
        "diff_hi": hi,
        "base_only": b,
        "cond_only": c,
        "mcnemar_p": mcnemar_exact(b, c),
    }
