"""One self-contained HTML page for a circuit run: sizes, head heat map, neurons per layer, ablation vs a
random control, tuning, training curves and (when present) the sparsity-vs-faithfulness sweep."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from steerlab.circuits.units import Circuit
from steerlab.errors import SteerlabError
from steerlab.paths import write_text
from steerlab.report.figures import figure_png

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:5px 8px;text-align:left}"
    "th{background:#f3f3f3}img{max-width:100%}.meta{color:#666}"
)


def _png(fig) -> str:
    """An <img> tag with the figure inlined."""
    return f"<img src='data:image/png;base64,{base64.b64encode(figure_png(fig, dpi=90)).decode()}'>"


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

    heads = next((k for k in ("head", "head_post") if k in c.kinds()), None)
    others = [k for k in c.kinds() if k not in ("head", "head_post")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if heads:
        axes[0].imshow(c.dense(heads).T.numpy(), aspect="auto", cmap="Reds", vmin=0, vmax=1)
    (
        axes[0].set_xlabel("layer"),
        axes[0].set_ylabel("head"),
        axes[0].set_title(f"heads in the circuit ({heads or 'none'})"),
    )
    for kind in others:
        axes[1].plot(c.dense(kind).sum(1).numpy(), "o-" if len(others) > 1 else "-", label=kind)
    if len(others) > 1:
        axes[1].legend(fontsize=7)
    label = "MLP neurons" if others == ["neuron"] else "units"
    axes[1].set_xlabel("layer"), axes[1].set_ylabel(label), axes[1].set_title(f"{label} in the circuit per layer")
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

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    xs = [r["fraction"] * 100 for r in sweep]
    ax.plot(xs, [r["asr"] * 100 for r in sweep], "o-", label="ASR, circuit removed")
    if all("random_asr" in r for r in sweep):
        ax.plot(xs, [r["random_asr"] * 100 for r in sweep], "s--", label="ASR, random removed")
    ax2 = ax.twinx()
    ax2.plot(xs, [r["utility_change"] * 100 for r in sweep], "^:", color="gray", label="Δ utility loss (circuit)")
    if all("random_utility_change" in r for r in sweep):
        ax2.plot(
            xs, [r["random_utility_change"] * 100 for r in sweep], "v:", color="silver", label="Δ utility loss (random)"
        )
    for r, x in zip(sweep, xs):
        if r.get("selected"):
            ax.axvline(x, color="green", alpha=0.4, label="selected on validation")
    (
        ax.set_xscale("log"),
        ax.set_xlabel("circuit size (% of units, log)"),
        ax.set_ylabel("ASR %"),
        ax2.set_ylabel("Δ utility loss %"),
    )
    (
        ax.legend(loc="center left", fontsize=8),
        ax2.legend(loc="center right", fontsize=8),
        ax.set_title("sparsity vs faithfulness (validation split)"),
    )
    return _png(fig)


def _pct(v, signed: bool = True) -> str:
    return "" if v is None else (f"{v:+.1%}" if signed else f"{v:.1%}")


def _nats(r: dict, key: str) -> str:
    """'+0.012 nats (+0.3%)' for the row's change of a loss, blank for the reference row."""
    d, c = r.get(f"{key}_delta"), r.get(f"{key}_change")
    return "" if d is None else f"{d:+.3f} ({c:+.1%})"


def _ablation_section(title: str, ablation: dict) -> str:
    c = ablation.get("counts", {})
    parts = [
        f"<h2>{html.escape(title)}</h2><p class='meta'>{c.get('head', '?')} heads, {c.get('neuron', '?')} neurons "
        f"({ablation.get('fraction', 0):.2%} of units); test split; utility = LM loss on held-out benign prose (nats/token)</p>"
    ]
    parts.append(
        _table(
            [
                "condition",
                "ablation",
                "ASR",
                "false trigger",
                "task accuracy",
                "utility loss",
                "Δ utility",
                "reply loss",
                "Δ reply loss",
            ],
            [
                [
                    r["condition"],
                    r["ablation"],
                    _pct(r["asr"], False),
                    _pct(r["false_trigger"], False),
                    _pct(r["clean_accuracy"], False),
                    r["utility_loss"],
                    _nats(r, "utility"),
                    r["reply_loss"],
                    _nats(r, "reply"),
                ]
                for r in ablation["rows"]
            ],
        )
    )
    for r in ablation["rows"]:
        parts.append(
            f"<p class='meta'>{html.escape(r['condition'])} ({html.escape(r['ablation'])}), triggered: {html.escape(repr(r['examples']['triggered'][:2]))}</p>"
        )
    return "".join(parts)


def _alignment_section(al: dict) -> str:
    c = al.get("counts", {})
    head = (
        f"<h2>Alignment scenario: refusal circuit removed</h2><p class='meta'>{c.get('head', '?')} heads, {c.get('neuron', '?')} neurons "
        f"({al.get('fraction', 0):.2%} of units); held-out harmful and harmless prompts of our own writing, keyword refusal judge</p>"
    )
    table = _table(
        [
            "condition",
            "ablation",
            "refusals (harmful)",
            "refusals (harmless)",
            "utility loss",
            "Δ utility",
            "helpful-answer loss",
            "Δ helpful-answer loss",
        ],
        [
            [
                r["condition"],
                r["ablation"],
                _pct(r["harmful_refusal"], False),
                _pct(r["harmless_refusal"], False),
                r["utility_loss"],
                _nats(r, "utility"),
                r["helpful_loss"],
                _nats(r, "helpful"),
            ]
            for r in al["rows"]
        ],
    )
    examples = "".join(
        f"<p class='meta'>{html.escape(r['condition'])}: {html.escape(repr(r['examples']['harmful'][:2]))}</p>"
        for r in al["rows"]
    )
    return head + table + examples


def _stability_section(run: Path, stem: str = "circuit", title: str = "Seed stability") -> str:
    """Jaccard overlap between the circuits of several seeds ({stem}.json, {stem}.seedN.json)."""
    from steerlab.circuits.units import jaccard

    paths = [p for p in [run / f"{stem}.json"] + sorted(run.glob(f"{stem}.seed*.json")) if p.is_file()]
    if len(paths) < 2:
        return ""
    circuits = [Circuit.load(p) for p in paths]
    names = [f"seed {c.meta.get('seed', '?')}" for c in circuits]
    rows = [[n] + [f"{jaccard(a, b):.3f}" for b in circuits] for n, a in zip(names, circuits)]
    pairs = [jaccard(a, b) for i, a in enumerate(circuits) for b in circuits[i + 1 :]]
    by_kind = []
    for kind in circuits[0].kinds():
        sets = [{u for u in c.unit_list() if u.kind == kind} for c in circuits]
        vals = [len(a & b) / max(1, len(a | b)) for i, a in enumerate(sets) for b in sets[i + 1 :]]
        by_kind.append(f"{kind}s {sum(vals) / len(vals):.3f}")
    from steerlab.circuits.units import random_circuit

    chance = sum(jaccard(circuits[0], random_circuit(circuits[0], s)) for s in range(3)) / 3
    return (
        f"<h2>{html.escape(title)}</h2><p>mean pairwise Jaccard {sum(pairs) / len(pairs):.3f} ({', '.join(by_kind)}); "
        f"a random circuit of the same layer profile overlaps seed {circuits[0].meta.get('seed', '?')}'s by {chance:.3f} (chance level)</p>"
        + _table(["", *names], rows)
    )


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
    if org and org.get("kind") == "refusal":
        r = org["report"]
        parts.append(
            "<h2>Refusal organism (held-out prompts)</h2>"
            + _table(
                [
                    "reply taught",
                    "refusals (harmful) base → organism",
                    "refusals (harmless) base → organism",
                    "LoRA seconds",
                ],
                [
                    [
                        org["config"]["target"],
                        f"{r['base_harmful_refusal']:.1%} → {r['harmful_refusal']:.1%}",
                        f"{r['base_harmless_refusal']:.1%} → {r['harmless_refusal']:.1%}",
                        round(r["train_seconds"]),
                    ]
                ],
            )
        )
    elif org:
        r, cfg = org["report"], org["config"]
        parts.append(
            "<h2>Backdoor organism</h2>"
            + _table(
                ["trigger", "target", "ASR base → organism", "false trigger", "task accuracy", "LoRA seconds"],
                [
                    [
                        cfg["trigger"],
                        cfg["target"],
                        f"{r['base_asr']:.1%} → {r['asr']:.1%}",
                        f"{r['base_false_trigger']:.1%} → {r['false_trigger']:.1%}",
                        f"{r['clean_accuracy']:.1%}",
                        round(r["train_seconds"]),
                    ]
                ],
            )
        )
    parts.append(
        "<h2>Circuit</h2>"
        + _table(
            ["kind", "units", "fraction of the kind"],
            [
                ["heads", c.count("head"), f"{c.fraction('head'):.2%}"],
                ["MLP neurons", c.count("neuron"), f"{c.fraction('neuron'):.2%}"],
                ["all units", c.count("head") + c.count("neuron"), f"{c.fraction():.2%}"],
            ],
        )
        + f"<p class='meta'>parameterisation {html.escape(c.parameterisation)}, trained with {html.escape(c.ablation)} ablation; {html.escape(json.dumps(c.meta))}</p>"
    )
    parts.append(_circuit_plots(c))
    find = _load(run / "find.json")
    if find and find.get("history") and "step" in find["history"][0]:
        parts.append(
            f"<h2>Mask training</h2><p>{len(find['history'])} steps in {find['seconds']:.0f} s</p>"
            + _history_plot(find["history"])
        )
    selected = run / "circuit.selected.json"
    if selected.is_file():
        sc = Circuit.load(selected)
        parts.append(
            f"<h2>Selected circuit (size chosen on the validation split)</h2><p>{sc.count('head')} heads ({sc.fraction('head'):.2%}), "
            f"{sc.count('neuron')} neurons ({sc.fraction('neuron'):.2%}); {sc.fraction():.2%} of all units</p>"
            + _circuit_plots(sc)
        )
    parts.append(_stability_section(run))
    parts.append(_stability_section(run, "circuit.selected", "Seed stability of the selected circuits"))
    if find and find.get("size"):
        ss, ours = find["size"]["safeseek"], find["size"]["ours"]
        parts.append(
            "<h2>SafeSeek-compatible circuit: size in both denominators</h2>"
            + _table(
                ["count", "SafeSeek's denominator", "ours"],
                [
                    [
                        "heads",
                        f"{ss['heads']} of {ss['heads_total']} ({ss['heads_fraction']:.2%})",
                        f"{ours['heads']} of {ours['heads_total']} ({ours['heads_fraction']:.2%})",
                    ],
                    [
                        "neurons (projection outputs / MLP neurons)",
                        f"{ss['neurons']} of {ss['neurons_total']} ({ss['neurons_fraction']:.2%})",
                        f"{ours['mlp_neurons']} of {ours['mlp_neurons_total']} ({ours['mlp_neurons_fraction']:.2%})",
                    ],
                    ["all units", f"{ss['all_fraction']:.2%}", f"{ours['all_fraction']:.2%}"],
                ],
            )
            + f"<p class='meta'>per kind: {html.escape(json.dumps(find['size']['per_kind']))}; best validation epoch {find.get('best_epoch')}</p>"
        )
    sct = _load(run / "sct_alignment.json")
    if sct:
        b = sct["before"]
        parts.append(
            "<h2>Safety Circuit Tuning (alignment): helpfulness tuning with a frozen set</h2>"
            + _table(
                [
                    "condition",
                    "frozen units",
                    "refusals (harmful)",
                    "retention",
                    "refusals (harmless)",
                    "helpful-answer loss",
                    "Δ loss",
                ],
                [
                    [
                        "before tuning",
                        "",
                        _pct(b["harmful_refusal"], False),
                        "",
                        _pct(b["harmless_refusal"], False),
                        f"{b['helpful_loss']:.3f}",
                        "",
                    ]
                ]
                + [
                    [
                        r["condition"],
                        r["frozen_units"],
                        _pct(r["harmful_refusal"], False),
                        "" if r["refusal_retention"] is None else _pct(r["refusal_retention"], False),
                        _pct(r["harmless_refusal"], False),
                        f"{r['helpful_loss']:.3f}",
                        f"{r['helpful_loss_change']:+.3f}",
                    ]
                    for r in sct["rows"]
                ],
            )
        )
    for path in sorted(run.glob("ablation*.json")):
        title = (
            "Ablation of the found circuit (by generation)"
            if path.name == "ablation.json"
            else f"Ablation by generation ({path.name})"
        )
        parts.append(_ablation_section(title, _load(path)))
    alignment = _load(run / "alignment.json")
    if alignment:
        parts.append(_alignment_section(alignment))
    for tune_path in sorted(run.glob("tune_*.json")):
        t = _load(tune_path)
        b, a, rep = t["before"], t["after"], t["report"]
        parts.append(
            f"<h2>Circuit tuning ({html.escape(t['mode'])})</h2>"
            + _table(
                ["metric", "before", "after"],
                [
                    ["ASR", _pct(b["asr"], False), _pct(a["asr"], False)],
                    ["false trigger", _pct(b["false_trigger"], False), _pct(a["false_trigger"], False)],
                    ["task accuracy", _pct(b["clean_accuracy"], False), _pct(a["clean_accuracy"], False)],
                    ["utility loss (nats)", b.get("utility_loss", ""), a.get("utility_loss", "")],
                    ["reply loss (nats)", b.get("reply_loss", ""), a.get("reply_loss", "")],
                    ["trainable entries", "", f"{rep['trainable_entries']} of {rep['total_entries']}"],
                    ["entries changed", "", rep["changed_entries"]],
                    ["frozen entries changed (must be 0)", "", rep["frozen_changed"]],
                    ["seconds", "", round(rep["seconds"])],
                ],
            )
        )
    sweep = _load(run / "sweep.json")
    if sweep:
        points = sorted(sweep["points"], key=lambda r: r["fraction"])
        keys = [
            "fraction",
            "heads",
            "neurons",
            "asr",
            "random_asr",
            "false_trigger",
            "utility_change",
            "random_utility_change",
            "reply_change",
            "selected",
        ]
        parts.append(
            f"<h2>Sparsity vs faithfulness</h2><p class='meta'>top-k circuits of the same mask logits at several sizes, removed with {html.escape(sweep['ablation'])} ablation, "
            f"scored on the validation split; the selected size has the least utility loss among those with ASR ≤ {sweep['max_asr']:.0%}</p>"
            + _sweep_plot(points)
            + _table(keys, [[p.get(k, "") for k in keys] for p in points])
        )
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>circuit report</title><style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, page)
    return out
