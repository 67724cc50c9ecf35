"""Write a diff's outputs: the ranked table (CSV + JSON), a bar plot of the top latents, one HTML page."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Sequence

from steerlab.errors import SteerlabError
from steerlab.persona.diff import DiffResult, LatentChange
from steerlab.persona.validate import Validation
from steerlab.report import Section, write_page

_COLUMNS = ("rank", "latent", "delta_mean", "mean_base", "mean_tuned", "delta_freq", "freq_base", "freq_tuned", "effect_size")


def _row(r: LatentChange, labels: dict[int, str] | None = None) -> list[object]:
    return [f"#{r.rank}", r.latent, (labels or {}).get(r.latent, "")] + [f"{getattr(r, c):.4g}" for c in _COLUMNS[2:]]


def load_labels(path: str | Path | None) -> dict[int, str]:
    """Latent labels from a CSV with 'index' (or 'latent') and 'label' columns, as `steerlab sae inspect` writes."""
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise SteerlabError(f"Label file {path} does not exist; pass the labels.csv written by 'steerlab sae inspect'.")
    with path.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        key = "index" if "index" in (reader.fieldnames or []) else "latent"
        if key not in (reader.fieldnames or []) or "label" not in (reader.fieldnames or []):
            raise SteerlabError(f"Label file {path} needs 'index' (or 'latent') and 'label' columns.")
        return {int(row[key]): row["label"] for row in reader if row.get(key, "").strip().isdigit()}


def default_labels_path(sae_path: str | Path) -> Path | None:
    """The labels.csv that `steerlab sae default`/`inspect` leaves beside an SAE folder, if there is one."""
    candidate = Path(sae_path).expanduser().parent / "inspect" / "labels.csv"
    return candidate if candidate.is_file() else None


def plot_top(result: DiffResult, n: int = 20) -> bytes:
    """PNG bytes: horizontal bars of the change in mean activation for the top n latents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.top(n)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))
    labels = [f"#{r.rank} (latent {r.latent})" for r in rows][::-1]
    ax.barh(labels, [r.delta_mean for r in rows][::-1], color="#c0504d")
    ax.set_xlabel("change in mean activation over response tokens (tuned - base)")
    ax.set_title(f"Top {len(rows)} latents, ranked by {result.rank_by}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_diff(result: DiffResult, out: str | Path, top: int = 20, labels: dict[int, str] | None = None) -> dict[str, Path]:
    """Write latents.csv (all latents, ranked), diff.json, and report.html into `out`; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "latents.csv", "json": out / "diff.json", "html": out / "report.html"}
    paths["csv"].write_text(result.to_csv(), encoding="utf-8")
    paths["json"].write_text(result.to_json(), encoding="utf-8")
    summary = result.summary()
    fit = [
        ["base", f"{result.fvu_base:.4g}", f"{result.median_norm_base:.4g}"],
        ["tuned", f"{result.fvu_tuned:.4g}", f"{result.median_norm_tuned:.4g}"],
    ]
    bottom = [[f"#-{i + 1}"] + _row(r, labels)[1:] for i, r in enumerate(result.bottom(top))]
    header = ["rank", "latent", "label", *_COLUMNS[2:]]
    examples = [[p, r] for p, r in list(zip(result.prompts, result.responses))[:10]]
    sections = [
        Section("SAE fit on response tokens", header=["model", "FVU", "median residual norm"], rows=fit,
                text="FVU = sum ||x - x_hat||^2 / sum ||x - mean x||^2; a much higher FVU on the tuned model means the SAE fits it poorly."),
        Section(f"Top {top} increases (ranked by {result.rank_by})", header=header,
                rows=[_row(r, labels) for r in result.top(top)], image=plot_top(result, top)),
        Section(f"Top {top} decreases", header=header, rows=bottom),
        Section("Prompts and the responses both models were scored on (first 10)", header=["prompt", "response"], rows=examples),
    ]
    write_page(paths["html"], f"Persona diff: {result.base} -> {result.tuned}", sections,
               meta={k: summary[k] for k in ("sae", "layer", "site", "n_prompts", "n_tokens")})
    return paths


def plot_curves(validations: Sequence[Validation]) -> bytes:
    """PNG bytes: misalignment rate and incoherent fraction vs strength, one line per latent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for v in validations:
        xs = [p.strength for p in v.points]
        axes[0].plot(xs, [p.misalignment_rate if p.misalignment_rate is not None else float("nan") for p in v.points], "o-", label=f"latent {v.latent}")
        axes[1].plot(xs, [p.incoherent_rate if p.incoherent_rate is not None else float("nan") for p in v.points], "o-", label=f"latent {v.latent}")
    for ax, title in zip(axes, ("misalignment rate", "incoherent fraction (coherence <= 50)")):
        ax.set_xlabel("strength (x median residual norm)")
        ax.set_title(title)
        ax.set_ylim(-0.05, 1.05)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_validation(validations: Sequence[Validation], out: str | Path, max_incoherence: float = 0.1) -> dict[str, Path]:
    """Write validation.json and report.html (steering curves and a per-strength table) into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "validation.json", "html": out / "report.html"}
    paths["json"].write_text(json.dumps([v.to_dict() for v in validations], indent=1), encoding="utf-8")
    fmt = lambda x: "n/a" if x is None else f"{x:.3g}"  # noqa: E731
    rows = [[v.latent, p.strength, fmt(p.absolute), fmt(p.misalignment_rate), p.n_rated, fmt(p.incoherent_rate),
             fmt(p.mean_alignment), fmt(p.mean_coherence)] for v in validations for p in v.points]
    verdicts = []
    for v in validations:
        best = v.best(max_incoherence)
        verdicts.append([v.latent, fmt(v.median_norm), "none" if best is None else best.strength,
                         "yes" if v.causes_shift(max_incoherence) else "no"])
    examples = [[v.latent, p.strength, r] for v in validations for p in v.points for r in p.responses[:2]]
    sections = [
        Section(f"Verdict (incoherence budget {max_incoherence:.0%})", header=["latent", "median norm", "best strength", "causes shift (+10 pts)"], rows=verdicts),
        Section("Steering curves", image=plot_curves(validations)),
        Section("Per strength", header=["latent", "strength", "added norm", "misalignment", "rated", "incoherent", "mean alignment", "mean coherence"], rows=rows),
        Section("Example answers", header=["latent", "strength", "answer"], rows=examples),
    ]
    judge = validations[0].judge if validations else ""
    write_page(paths["html"], f"Persona steering validation: {validations[0].model if validations else ''}", sections,
               meta={"judge": judge, "layer": validations[0].layer if validations else ""})
    return paths
