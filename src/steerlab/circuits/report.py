"""One self-contained HTML page for a circuit run: sizes, head heat map, neurons per layer, ablation vs a
random control, tuning, training curves and (when present) the sparsity-vs-faithfulness sweep."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from steerlab.circuits.units import Circuit
from steerlab.errors import SteerlabError

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:5px 8px;text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%}.meta{color:#666}"
)


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f"<img src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _circuit_plots(c: Circuit) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].imshow(c.dense("head").T.numpy(), aspect="auto", cmap="Reds", vmin=0, vmax=1)
    axes[0].set_xlabel("layer"), axes[0].set_ylabel("head"), axes[0].set_title("heads in the circuit")
    per_layer = c.dense("neuron").sum(1).numpy()
    axes[1].bar(range(len(per_layer)), per_layer)
    axes[1].set_xlabel("layer"), axes[1].set_ylabel("neurons"), axes[1].set_title("MLP neurons in the circuit per layer")
    return _png(fig)


def _history_plot(history: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    steps = [h["step"] for h in history]
    for key in [k for k in history[0] if k not in ("step",) and not k.startswith("l0_")]:
        axes[0].plot(steps, [h[key] for h in history], label=key)
    axes[0].set_yscale("log"), axes[0].legend(), axes[0].set_title("objective terms"), axes[0].set_xlabel("step")
    for key in [k for k in history[0] if k.startswith("l0_")]:
        axes[1].plot(steps, [h[key] for h in history], label=key)
    axes[1].legend(), axes[1].set_title("expected fraction in the circuit"), axes[1].set_xlabel("step")
    return _png(fig)


def _sweep_plot(sweep: list[dict]) -> str:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["fraction"] * 100 for r in sweep]
    ax.plot(xs, [r["asr"] * 100 for r in sweep], "o-", label="ASR, circuit removed")
    if all("random_asr" in r for r in sweep):
        ax.plot(xs, [r["random_asr"] * 100 for r in sweep], "s--", label="ASR, random removed")
    ax2 = ax.twinx()
    ax2.plot(xs, [r["loss_change"] * 100 for r in sweep], "^:", color="gray", label="clean loss change")
    ax.set_xlabel("circuit size (% of units)"), ax.set_ylabel("ASR %"), ax2.set_ylabel("Δ clean loss %")
    ax.legend(loc="upper right"), ax.set_title("sparsity vs faithfulness")
    return _png(fig)


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def write_report(run: str | Path, out: str | Path, organism: str | Path | None = None) -> Path:
    """Build the page from whatever the run folder holds; needs at least circuit.json."""
    run, out = Path(run), Path(out)
    if not (run / "circuit.json").is_file():
        raise SteerlabError(f"'{run}' holds no circuit.json; run `steerlab circuits find --out {run}` first.")
    c = Circuit.load(run / "circuit.json")
    parts = [f"<h1>Circuit report: {html.escape(str(c.signature.get('model')))}</h1>"]
    org = _load(Path(organism) / "organism.json") if organism else None
    if org:
        r, cfg = org["report"], org["config"]
        parts.append("<h2>Backdoor organism</h2>" + _table(["trigger", "target", "ASR base → organism", "false trigger", "task accuracy", "LoRA seconds"], [[
            cfg["trigger"], cfg["target"], f"{r['base_asr']:.1%} → {r['asr']:.1%}", f"{r['base_false_trigger']:.1%} → {r['false_trigger']:.1%}", f"{r['clean_accuracy']:.1%}", round(r["train_seconds"]),
        ]]))
    parts.append("<h2>Circuit</h2>" + _table(["kind", "units", "fraction of the kind"], [
        ["heads", c.count("head"), f"{c.fraction('head'):.2%}"], ["MLP neurons", c.count("neuron"), f"{c.fraction('neuron'):.2%}"],
        ["all units", c.count("head") + c.count("neuron"), f"{c.fraction():.2%}"],
    ]) + f"<p class='meta'>parameterisation {html.escape(c.parameterisation)}, trained with {html.escape(c.ablation)} ablation; {html.escape(json.dumps(c.meta))}</p>")
    parts.append(_circuit_plots(c))
    find = _load(run / "find.json")
    if find and find.get("history"):
        parts.append(f"<h2>Mask training</h2><p>{len(find['history'])} steps in {find['seconds']:.0f} s</p>" + _history_plot(find["history"]))
    ablation = _load(run / "ablation.json")
    if ablation:
        parts.append("<h2>Ablation (by generation)</h2>" + _table(["condition", "ablation", "ASR", "false trigger", "task accuracy", "clean loss", "Δ loss", "text loss", "Δ text loss"], [
            [r["condition"], r["ablation"], f"{r['asr']:.1%}", f"{r['false_trigger']:.1%}", f"{r['clean_accuracy']:.1%}", r["clean_loss"], "" if r["loss_change"] is None else f"{r['loss_change']:+.1%}", r.get("text_loss") or "", "" if r.get("text_loss_change") is None else f"{r['text_loss_change']:+.1%}"]
            for r in ablation["rows"]
        ]))
        for r in ablation["rows"]:
            parts.append(f"<p class='meta'>{html.escape(r['condition'])} ({html.escape(r['ablation'])}), triggered: {html.escape(repr(r['examples']['triggered'][:2]))}</p>")
    for tune_path in sorted(run.glob("tune_*.json")):
        t = _load(tune_path)
        b, a, rep = t["before"], t["after"], t["report"]
        parts.append(f"<h2>Circuit tuning ({html.escape(t['mode'])})</h2>" + _table(["metric", "before", "after"], [
            ["ASR", f"{b['asr']:.1%}", f"{a['asr']:.1%}"], ["false trigger", f"{b['false_trigger']:.1%}", f"{a['false_trigger']:.1%}"],
            ["task accuracy", f"{b['clean_accuracy']:.1%}", f"{a['clean_accuracy']:.1%}"], ["clean loss", b["clean_loss"], a["clean_loss"]],
            ["trainable entries", "", f"{rep['trainable_entries']} of {rep['total_entries']}"], ["entries changed", "", rep["changed_entries"]],
            ["frozen entries changed (must be 0)", "", rep["frozen_changed"]],
        ]))
    sweep = _load(run / "sweep.json")
    if sweep:
        points = list(sweep)
        removed = [r for r in (ablation or {}).get("rows", []) if r["condition"] == "circuit removed"]
        randoms = [r for r in (ablation or {}).get("rows", []) if r["condition"].startswith("random circuit removed")]
        if removed and randoms and "fraction" in ablation:  # the found circuit is one more point of the curve
            points.append({"fraction": ablation["fraction"], "asr": removed[0]["asr"], "random_asr": randoms[0]["asr"], "loss_change": removed[0]["loss_change"]})
        points.sort(key=lambda r: r["fraction"])
        parts.append("<h2>Sparsity vs faithfulness</h2>" + _sweep_plot(points) + _table(list(sweep[0].keys()), [list(r.values()) for r in sweep]))
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>circuit report</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
