"""One self-contained HTML page for a circuit run: sizes, head heat map, neurons per layer, ablation vs a
random control, tuning, training curves and (when present) the sparsity-vs-faithfulness sweep."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Callable, Sequence

from steerlab.circuits.units import Circuit
from steerlab.errors import SteerlabError
from steerlab.report.figures import figure_png
from steerlab.report.html import Section, png_img, table, write_page

Table = tuple[list[str], list[list]]  # (header, rows): printed by the CLI, rendered on the page


def _png(fig) -> str:
    """An <img> tag with the figure inlined."""
    return png_img(figure_png(fig, dpi=90))


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _html(tab: Table) -> str:
    header, rows = tab
    return table(header, [[_cell(c) for c in r] for r in rows])


def pct(v: float | None, signed: bool = False) -> str:
    """'12.5%' ('+12.5%' signed), blank for None."""
    return "" if v is None else (f"{v:+.1%}" if signed else f"{v:.1%}")


def nats(r: dict, key: str) -> str:
    """'+0.012 nats (+0.3%)' for the row's change of a loss, blank for the reference row."""
    d, c = r.get(f"{key}_delta"), r.get(f"{key}_change")
    return "" if d is None else f"{d:+.3f} nats ({c:+.1%})"


def _columns(columns: Sequence[tuple[str, Callable[[dict], object]]], rows: Sequence[dict]) -> Table:
    return [h for h, _ in columns], [[f(r) for _, f in columns] for r in rows]


def units_table(c: Circuit) -> Table:
    """Units of the circuit per kind."""
    return ["kind", "units", "fraction of the kind"], [
        ["heads", c.count("head"), f"{c.fraction('head'):.2%}"],
        ["MLP neurons", c.count("neuron"), f"{c.fraction('neuron'):.2%}"],
        ["all units", c.count("head") + c.count("neuron"), f"{c.fraction():.2%}"],
    ]


def ablation_table(rows: Sequence[dict]) -> Table:
    """The backdoor circuit removed vs controls (rows of ablation.json)."""
    return _columns(
        [
            ("condition", lambda r: r["condition"]),
            ("ablation", lambda r: r["ablation"]),
            ("ASR", lambda r: pct(r["asr"])),
            ("false trigger", lambda r: pct(r["false_trigger"])),
            ("task accuracy", lambda r: pct(r["clean_accuracy"])),
            ("utility loss", lambda r: r["utility_loss"]),
            ("Δ utility", lambda r: nats(r, "utility")),
            ("reply loss", lambda r: r["reply_loss"]),
            ("Δ reply loss", lambda r: nats(r, "reply")),
        ],
        rows,
    )


def alignment_table(rows: Sequence[dict]) -> Table:
    """The refusal circuit removed vs controls (rows of alignment.json)."""
    return _columns(
        [
            ("condition", lambda r: r["condition"]),
            ("ablation", lambda r: r["ablation"]),
            ("refusals (harmful)", lambda r: pct(r["harmful_refusal"])),
            ("refusals (harmless)", lambda r: pct(r["harmless_refusal"])),
            ("utility loss", lambda r: r["utility_loss"]),
            ("Δ utility", lambda r: nats(r, "utility")),
            ("helpful-answer loss", lambda r: r["helpful_loss"]),
            ("Δ helpful-answer loss", lambda r: nats(r, "helpful")),
        ],
        rows,
    )


def sct_table(result: dict) -> Table:
    """Safety Circuit Tuning for alignment: before tuning, then each frozen set (sct_alignment.json)."""
    b = result["before"]
    before = {
        "condition": "before tuning",
        "frozen_units": "",
        "harmful_refusal": b["harmful_refusal"],
        "refusal_retention": None,
        "harmless_refusal": b["harmless_refusal"],
        "helpful_loss": b["helpful_loss"],
        "helpful_loss_change": None,
    }
    return _columns(
        [
            ("condition", lambda r: r["condition"]),
            ("frozen units", lambda r: r["frozen_units"]),
            ("refusals (harmful)", lambda r: pct(r["harmful_refusal"])),
            ("retention", lambda r: pct(r["refusal_retention"])),
            ("refusals (harmless)", lambda r: pct(r["harmless_refusal"])),
            ("helpful-answer loss", lambda r: f"{r['helpful_loss']:.3f}"),
            (
                "Δ loss (− = more helpful)",
                lambda r: "" if r["helpful_loss_change"] is None else f"{r['helpful_loss_change']:+.3f}",
            ),
        ],
        [before, *result["rows"]],
    )


def tune_table(before: dict, after: dict, report: dict) -> Table:
    """Circuit tuning: the backdoor metrics before and after, and what the tuning touched (tune_MODE.json)."""
    return ["metric", "before", "after"], [
        ["ASR", pct(before["asr"]), pct(after["asr"])],
        ["false trigger", pct(before["false_trigger"]), pct(after["false_trigger"])],
        ["task accuracy", pct(before["clean_accuracy"]), pct(after["clean_accuracy"])],
        ["utility loss (nats)", before.get("utility_loss", ""), after.get("utility_loss", "")],
        ["reply loss (nats)", before.get("reply_loss", ""), after.get("reply_loss", "")],
        ["trainable entries", "", f"{report['trainable_entries']} of {report['total_entries']}"],
        ["entries changed", "", report["changed_entries"]],
        ["frozen entries changed (must be 0)", "", report["frozen_changed"]],
        ["seconds", "", round(report["seconds"])],
    ]


def sweep_table(points: Sequence[dict]) -> Table:
    """Sparsity vs faithfulness: one row per circuit size (sweep.json)."""
    return _columns(
        [
            ("size", lambda p: f"{p['fraction']:.2%}"),
            ("heads", lambda p: p["heads"]),
            ("neurons", lambda p: p["neurons"]),
            ("ASR removed", lambda p: pct(p["asr"])),
            ("ASR random", lambda p: pct(p.get("random_asr"))),
            ("Δ utility", lambda p: pct(p["utility_change"], True)),
            ("Δ utility random", lambda p: pct(p.get("random_utility_change"), True)),
            ("Δ reply loss", lambda p: pct(p["reply_change"], True)),
            ("selected", lambda p: "yes" if p.get("selected") else ""),
        ],
        points,
    )


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


def _ablation_section(title: str, ablation: dict) -> Section:
    c = ablation.get("counts", {})
    meta = (
        f"<p class='meta'>{c.get('head', '?')} heads, {c.get('neuron', '?')} neurons "
        f"({ablation.get('fraction', 0):.2%} of units); test split; utility = LM loss on held-out benign prose (nats/token)</p>"
    )
    examples = "".join(
        f"<p class='meta'>{html.escape(r['condition'])} ({html.escape(r['ablation'])}), triggered: {html.escape(repr(r['examples']['triggered'][:2]))}</p>"
        for r in ablation["rows"]
    )
    return Section(title, markup=meta + _html(ablation_table(ablation["rows"])) + examples)


def _alignment_section(al: dict) -> Section:
    c = al.get("counts", {})
    meta = (
        f"<p class='meta'>{c.get('head', '?')} heads, {c.get('neuron', '?')} neurons "
        f"({al.get('fraction', 0):.2%} of units); held-out harmful and harmless prompts of our own writing, keyword refusal judge</p>"
    )
    examples = "".join(
        f"<p class='meta'>{html.escape(r['condition'])}: {html.escape(repr(r['examples']['harmful'][:2]))}</p>"
        for r in al["rows"]
    )
    return Section(
        "Alignment scenario: refusal circuit removed", markup=meta + _html(alignment_table(al["rows"])) + examples
    )


def _stability_section(run: Path, stem: str = "circuit", title: str = "Seed stability") -> Section | None:
    """Jaccard overlap between the circuits of several seeds ({stem}.json, {stem}.seedN.json)."""
    from steerlab.circuits.units import jaccard, random_circuit

    paths = [p for p in [run / f"{stem}.json"] + sorted(run.glob(f"{stem}.seed*.json")) if p.is_file()]
    if len(paths) < 2:
        return None
    circuits = [Circuit.load(p) for p in paths]
    names = [f"seed {c.meta.get('seed', '?')}" for c in circuits]
    rows = [[n] + [f"{jaccard(a, b):.3f}" for b in circuits] for n, a in zip(names, circuits)]
    pairs = [jaccard(a, b) for i, a in enumerate(circuits) for b in circuits[i + 1 :]]
    by_kind = []
    for kind in circuits[0].kinds():
        sets = [{u for u in c.unit_list() if u.kind == kind} for c in circuits]
        vals = [len(a & b) / max(1, len(a | b)) for i, a in enumerate(sets) for b in sets[i + 1 :]]
        by_kind.append(f"{kind}s {sum(vals) / len(vals):.3f}")
    chance = sum(jaccard(circuits[0], random_circuit(circuits[0], s)) for s in range(3)) / 3
    return Section(
        title,
        markup=f"<p>mean pairwise Jaccard {sum(pairs) / len(pairs):.3f} ({', '.join(by_kind)}); "
        f"a random circuit of the same layer profile overlaps seed {circuits[0].meta.get('seed', '?')}'s by {chance:.3f} (chance level)</p>"
        + _html((["", *names], rows)),
    )


def _organism_section(org: dict) -> Section:
    r, cfg = org["report"], org["config"]
    if org.get("kind") == "refusal":
        return Section(
            "Refusal organism (held-out prompts)",
            markup=_html(
                (
                    [
                        "reply taught",
                        "refusals (harmful) base → organism",
                        "refusals (harmless) base → organism",
                        "LoRA seconds",
                    ],
                    [
                        [
                            cfg["target"],
                            f"{r['base_harmful_refusal']:.1%} → {r['harmful_refusal']:.1%}",
                            f"{r['base_harmless_refusal']:.1%} → {r['harmless_refusal']:.1%}",
                            round(r["train_seconds"]),
                        ]
                    ],
                )
            ),
        )
    return Section(
        "Backdoor organism",
        markup=_html(
            (
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
        ),
    )


def safeseek_size_table(size: dict) -> Table:
    """A SafeSeek-compatible circuit's size in SafeSeek's denominators and in ours (find.json's "size")."""
    ss, ours = size["safeseek"], size["ours"]
    return ["count", "SafeSeek's denominator", "ours"], [
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
    ]


def _safeseek_size_section(find: dict) -> Section:
    return Section(
        "SafeSeek-compatible circuit: size in both denominators",
        markup=_html(safeseek_size_table(find["size"]))
        + f"<p class='meta'>per kind: {html.escape(json.dumps(find['size']['per_kind']))}; best validation epoch {find.get('best_epoch')}</p>",
    )


def _load(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def write_report(run: str | Path, out: str | Path, organism: str | Path | None = None) -> Path:
    """Build the page from whatever the run folder holds; needs at least circuit.json."""
    run, out = Path(run), Path(out)
    if not (run / "circuit.json").is_file():
        raise SteerlabError(f"'{run}' holds no circuit.json; run `steerlab circuits find --out {run}` first.")
    c = Circuit.load(run / "circuit.json")
    sections: list[Section | None] = []
    org = _load(Path(organism) / "organism.json") if organism else None
    if org:
        sections.append(_organism_section(org))
    sections.append(
        Section(
            "Circuit",
            markup=_html(units_table(c))
            + f"<p class='meta'>parameterisation {html.escape(c.parameterisation)}, trained with {html.escape(c.ablation)} ablation; {html.escape(json.dumps(c.meta))}</p>"
            + _circuit_plots(c),
        )
    )
    find = _load(run / "find.json")
    if find and find.get("history") and "step" in find["history"][0]:
        sections.append(
            Section(
                "Mask training",
                markup=f"<p>{len(find['history'])} steps in {find['seconds']:.0f} s</p>"
                + _history_plot(find["history"]),
            )
        )
    selected = run / "circuit.selected.json"
    if selected.is_file():
        sc = Circuit.load(selected)
        sections.append(
            Section(
                "Selected circuit (size chosen on the validation split)",
                markup=f"<p>{sc.count('head')} heads ({sc.fraction('head'):.2%}), "
                f"{sc.count('neuron')} neurons ({sc.fraction('neuron'):.2%}); {sc.fraction():.2%} of all units</p>"
                + _circuit_plots(sc),
            )
        )
    sections.append(_stability_section(run))
    sections.append(_stability_section(run, "circuit.selected", "Seed stability of the selected circuits"))
    if find and find.get("size"):
        sections.append(_safeseek_size_section(find))
    sct = _load(run / "sct_alignment.json")
    if sct:
        sections.append(
            Section(
                "Safety Circuit Tuning (alignment): helpfulness tuning with a frozen set", markup=_html(sct_table(sct))
            )
        )
    for path in sorted(run.glob("ablation*.json")):
        title = (
            "Ablation of the found circuit (by generation)"
            if path.name == "ablation.json"
            else f"Ablation by generation ({path.name})"
        )
        sections.append(_ablation_section(title, _load(path)))
    alignment = _load(run / "alignment.json")
    if alignment:
        sections.append(_alignment_section(alignment))
    for tune_path in sorted(run.glob("tune_*.json")):
        t = _load(tune_path)
        sections.append(
            Section(f"Circuit tuning ({t['mode']})", markup=_html(tune_table(t["before"], t["after"], t["report"])))
        )
    sweep = _load(run / "sweep.json")
    if sweep:
        points = sorted(sweep["points"], key=lambda r: r["fraction"])
        sections.append(
            Section(
                "Sparsity vs faithfulness",
                markup=f"<p class='meta'>top-k circuits of the same mask logits at several sizes, removed with {html.escape(sweep['ablation'])} ablation, "
                f"scored on the validation split; the selected size has the least utility loss among those with ASR ≤ {sweep['max_asr']:.0%}</p>"
                + _sweep_plot(points)
                + _html(sweep_table(points)),
            )
        )
    return write_page(
        out, f"Circuit report: {c.signature.get('model')}", [s for s in sections if s is not None], {"run": str(run)}
    )
