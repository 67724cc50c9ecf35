"""Matplotlib figures for the ESR report, returned as PNG bytes (Agg backend, no display)."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from steerlab.report.figures import figure_png  # noqa: E402


def _ci(est: dict, scale: float) -> tuple[float, float, float]:
    v = (est.get("value") or 0.0) * scale
    los = [x for x in (est.get("lo"), est.get("boot_lo")) if x is not None]
    his = [x for x in (est.get("hi"), est.get("boot_hi")) if x is not None]
    lo = min(los) * scale if los else v
    hi = max(his) * scale if his else v
    return v, max(0.0, v - lo), max(0.0, hi - v)


def condition_bars(metrics: dict[str, dict], conditions: Sequence[str], target: float | None = None) -> bytes:
    """First score, multi-attempt rate and ESR rate per condition, with 95% CIs (bootstrap when present)."""
    panels = [
        ("first_score", "first-attempt score (0-100)", 1.0),
        ("multi_attempt_rate", "multi-attempt rate (%)", 100.0),
        ("esr_rate", "ESR rate (%)", 100.0),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (key, title, scale) in zip(axes, panels):
        vals = [_ci(metrics[c][key], scale) for c in conditions]
        ax.bar(
            range(len(conditions)),
            [v for v, _, _ in vals],
            yerr=[[l for _, l, _ in vals], [h for _, _, h in vals]],
            capsize=4,
            color="#4a78b5",
        )
        ax.set_xticks(range(len(conditions)), conditions, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key == "first_score" and target is not None:
            ax.axhline(target, color="#c0392b", ls="--", lw=1, label=f"target {target:g}")
            ax.legend(fontsize=8)
    return figure_png(fig)


def calibration_plot(thresholds: dict[str, dict], target: float) -> bytes:
    """Each latent's search path (boost vs measured first score) and its final threshold."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for lat, t in thresholds.items():
        hist = t.get("history") or []
        line = axes[0].plot([h[0] for h in hist], [h[1] for h in hist], "o-", ms=3, lw=0.8, label=str(lat))[0]
        samples = t.get("samples") or []
        axes[0].scatter([s[0] for s in samples], [s[1] for s in samples], s=6, alpha=0.25, color=line.get_color())
    axes[0].axhline(target, color="#c0392b", ls="--", lw=1)
    axes[0].set_xlabel("boost (residual units)")
    axes[0].set_ylabel("mean first-attempt score")
    axes[0].set_title("search: step means (lines) and single trials (dots)", fontsize=10)
    if len(thresholds) <= 12:
        axes[0].legend(fontsize=7, ncol=2)
    lats = list(thresholds)
    axes[1].bar(range(len(lats)), [thresholds[l]["threshold"] for l in lats], color="#4a78b5")
    axes[1].set_xticks(range(len(lats)), lats, rotation=45, fontsize=7)
    for i, l in enumerate(lats):
        axes[1].text(
            i, thresholds[l]["threshold"], f"{thresholds[l]['achieved']:.0f}", ha="center", va="bottom", fontsize=7
        )
    axes[1].set_title("thresholds (label: score measured at the threshold)", fontsize=10)
    return figure_png(fig)


def delta_histogram(deltas: dict[str, list[float]]) -> bytes:
    """Histogram of last − first score over multi-attempt trials, per condition."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = [-100 + i * 200 / 30 for i in range(31)]
    for cond, d in deltas.items():
        if d:
            ax.hist(d, bins=bins, alpha=0.5, label=f"{cond} (n={len(d)})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("last − first attempt score")
    ax.set_ylabel("multi-attempt trials")
    ax.legend(fontsize=8)
    return figure_png(fig)


def sweep_plot(levels: list[float], metrics: list[dict]) -> bytes:
    """Boost sweep: rates and first score against the boost in σ units of the calibrated thresholds."""
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (key, title, scale) in zip(
        axes,
        [
            ("first_score", "first score", 1.0),
            ("multi_attempt_rate", "multi-attempt %", 100.0),
            ("improvement_rate", "improvement %", 100.0),
            ("esr_rate", "ESR %", 100.0),
        ],
    ):
        vals = [_ci(m[key], scale) for m in metrics]
        ax.errorbar(
            levels,
            [v for v, _, _ in vals],
            yerr=[[l for _, l, _ in vals], [h for _, _, h in vals]],
            fmt="o-",
            capsize=3,
        )
        ax.set_xlabel("boost (σ from mean threshold)")
        ax.set_title(title, fontsize=10)
    return figure_png(fig)


def detector_plot(stats: dict[str, dict], detectors: Sequence[int]) -> bytes:
    """Effect sizes (Cohen's d, AUC) of the chosen detectors: off-topic vs on-topic answers."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    ds = [stats[str(d)]["cohens_d"] for d in detectors]
    aucs = [stats[str(d)]["auc"] for d in detectors]
    ax.bar(range(len(detectors)), ds, color="#4a78b5")
    for i, a in enumerate(aucs):
        ax.text(i, ds[i], f"{a:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(detectors)), [str(d) for d in detectors], rotation=45, fontsize=7)
    ax.set_ylabel("Cohen's d (shuffled − normal)")
    ax.set_title("off-topic detectors (label: AUC)", fontsize=10)
    return figure_png(fig)


def trace_plot(traces: list[dict]) -> bytes:
    """Per-token summed detector activation through episodes, aligned at the restart token."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for tr in traces[:8]:
        xs = [i - (tr.get("restart_token") or 0) for i in range(len(tr["detector_sum"]))]
        ax.plot(xs, tr["detector_sum"], lw=0.9, label=f"latent {tr['latent']}")
    ax.axvline(0, color="#c0392b", ls="--", lw=1)
    ax.set_xlabel("token (0 = restart phrase)")
    ax.set_ylabel("Σ detector activations")
    ax.legend(fontsize=7)
    return figure_png(fig)


def bar_values(names: Sequence[str], values: Sequence[float], title: str, ylabel: str) -> bytes:
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.bar(range(len(names)), values, color="#4a78b5")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    return figure_png(fig)
