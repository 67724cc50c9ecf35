"""`steerlab esr report RUN`: one self-contained HTML page with a plot per experiment, CIs and examples."""

from __future__ import annotations

import html
import json
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.esr import plots
from steerlab.esr.metrics import Estimate
from steerlab.judges.restarts import restart_positions
from steerlab.paths import write_json
from steerlab.report import Section, write_page
from steerlab.store import RunStore

ORDER = ("baseline", "steered")


def _read(run_dir: Path, name: str):
    p = run_dir / name
    return json.loads(p.read_text()) if p.is_file() else None


def _est(d: dict, scale: float = 1.0, digits: int = 1) -> str:
    return Estimate(**d).fmt(scale, digits) if d else "n/a"


def _ordered(conditions) -> list[str]:
    first = [c for c in ORDER if c in conditions]
    return first + sorted(c for c in conditions if c not in ORDER)


def summary_rows(summary: dict) -> list[list[str]]:
    """The summary table: one row per condition, every metric with its 95% cluster-bootstrap CI."""
    rows = []
    for c in _ordered(summary["metrics"]):
        m = summary["metrics"][c]
        rows.append(
            [
                c,
                str(summary["n_trials"][c]),
                _est(m["first_score"]),
                _est(m["multi_attempt_rate"], 100) + " %",
                _est(m["esr_rate"], 100) + " %",
                _est(m["improvement_rate"], 100) + " %",
                _est(m["mean_score_improvement"]),
                _est(m["mean_attempts"], 1, 2),
                f"{(m['degraded_rate']['value'] or 0) * 100:.0f} %",
            ]
        )
    return rows


SUMMARY_HEADER = [
    "condition",
    "n",
    "first score",
    "multi-attempt",
    "ESR",
    "improved | multi",
    "mean Δ | multi",
    "attempts",
    "degraded",
]


def highlight(text: str) -> str:
    """The response, escaped, with each restart phrase wrapped in <mark>."""
    out, last = [], 0
    for s, e in restart_positions(text):
        out += [html.escape(text[last:s]), f"<mark>{html.escape(text[s:e])}</mark>"]
        last = e
    out.append(html.escape(text[last:]))
    return "".join(out)


def _geo(values) -> str:
    """Geometric mean of positive values, for comparing matched sets at a glance."""
    import math

    vals = [v for v in values or [] if v and v > 0]
    return f"{math.exp(sum(math.log(v) for v in vals) / len(vals)):.3g}" if vals else ""


def examples_markup(rows: list[dict], judge_id: str, limit: int = 6) -> str:
    """Multi-attempt episodes (ESR ones first) with attempts' scores and the restart highlighted."""
    picked = []
    for r in rows:
        g = next((g for g in r["grades"] if g["judge_id"] == judge_id and not g["error"]), None)
        if g and g["n_attempts"] > 1:
            picked.append((g["last_score"] <= g["first_score"], r, g))
    picked.sort(key=lambda x: x[0])
    if not picked:
        return "<p>No multi-attempt response in this run.</p>"
    parts = []
    for _, r, g in picked[:limit]:
        scores = " → ".join(f"{a['score']:.0f}" for a in g["attempts"])
        parts.append(
            f"<h3>{html.escape(r['condition'])} · latent {r['latent']} ({html.escape(r['label'] or '')}) · boost {r['strength']}</h3>"
            f"<p><b>prompt:</b> {html.escape(r['prompt'])}<br><b>attempt scores:</b> {scores}</p><pre>{highlight(r['response'] or '')}</pre>"
        )
    return "".join(parts)


def steered_fluency(run_dir: Path, judge_id: str | None = None) -> dict[str, dict]:
    """Per latent: the share of degenerate steered answers (loops, number runs, non-words) and two example answers."""
    from steerlab.esr.fluency import degeneration

    store = RunStore(run_dir, create=False)
    try:
        rows = [r for r in store.rows() if r["condition"] == "steered" and r["response"] is not None]
    finally:
        store.close()
    out: dict[str, dict] = {}
    for r in rows:
        d = out.setdefault(
            str(r["latent"]),
            {
                "n": 0,
                "degenerate": 0,
                "kinds": {},
                "examples": [],
                "label": r["label"] or "",
                "strength": r["strength"],
            },
        )
        kind = degeneration(r["response"])
        d["n"] += 1
        if kind is not None:
            d["degenerate"] += 1
            d["kinds"][kind] = d["kinds"].get(kind, 0) + 1
        if len(d["examples"]) < 2:
            d["examples"].append({"prompt": r["prompt"], "response": r["response"], "degenerate": kind})
    return out


def fluency_section(run_dir: Path, summary: dict) -> Section | None:
    """Fluent drift: per latent at its threshold, the degenerate share of steered answers, with example answers."""
    if "steered" not in summary.get("metrics", {}) or not (run_dir / "run.sqlite").is_file():
        return None
    per = steered_fluency(run_dir)
    if not per:
        return None
    n = sum(d["n"] for d in per.values())
    bad = sum(d["degenerate"] for d in per.values())
    dropped = (_read(run_dir, "fluency.json") or {}).get("dropped", [])
    rows = [
        [
            lat,
            d["label"],
            f"{d['strength']:.2f}",
            d["n"],
            f"{100 * d['degenerate'] / d['n']:.0f} %",
            json.dumps(d["kinds"]),
        ]
        for lat, d in per.items()
    ]
    examples = "".join(
        f"<h3>latent {html.escape(lat)} · {html.escape(d['label'])}</h3>"
        + "".join(
            f"<p><b>{html.escape(e['prompt'])}</b> ({'degenerate: ' + e['degenerate'] if e['degenerate'] else 'fluent'})</p>"
            f"<pre>{html.escape(e['response'])}</pre>"
            for e in d["examples"]
        )
        for lat, d in per.items()
    )
    text = (
        f"{bad} of {n} steered answers ({100 * bad / max(n, 1):.1f} %) are degenerate (loops, number runs, non-words). "
        f"Latents dropped after calibration for breaking the text: {dropped or 'none'}."
    )
    return Section(
        "Fluent drift: degenerate steered answers per latent at its threshold",
        ["latent", "label", "strength", "answers", "degenerate", "kinds"],
        rows,
        text=text,
        markup=examples,
    )


def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html from the run's saved stages and store; returns its path."""
    run_dir = Path(run_dir).expanduser()
    summary = _read(run_dir, "summary.json")
    if summary is None:
        raise SteerlabError(f"{run_dir} has no summary.json; run `steerlab esr run` there first.")
    sections: list[Section] = []
    conds = _ordered(summary["metrics"])
    main = [c for c in conds if not c.startswith("boost:")]
    excluded = summary.get("excluded") or {}
    note = (
        ("Trials left out of the metrics (no attempt found, judge error, or not graded yet): " + json.dumps(excluded))
        if excluded
        else ""
    )
    sections.append(
        Section(
            "Summary (95% CIs: the wider of Wilson / t and the cluster bootstrap over latents)",
            SUMMARY_HEADER,
            summary_rows(summary),
            text=note,
        )
    )
    if main:
        sections.append(
            Section(
                "Conditions (error bars: the wider of the analytic and cluster-bootstrap 95% CIs)",
                image=plots.condition_bars(summary["metrics"], main, summary.get("target")),
            )
        )
    comp = summary.get("comparisons") or {}
    if comp:
        rows = []
        for c, v in comp.items():
            for ev in ("multi_attempt", "esr"):
                p = v[ev]
                if not p.get("n_pairs"):
                    continue
                ci = f"[{p['diff_lo'] * 100:+.1f}, {p['diff_hi'] * 100:+.1f}]" if p.get("diff_lo") is not None else ""
                key = "multi_attempt_rate" if ev == "multi_attempt" else "esr_rate"
                red = (v.get("relative_reduction_pct") or {}).get(key)
                inc = (v.get("increase_factor") or {}).get(key)
                rows.append(
                    [
                        c,
                        ev,
                        p["n_pairs"],
                        f"{p['base_rate'] * 100:.1f} %",
                        f"{p['cond_rate'] * 100:.1f} %",
                        f"{p['difference'] * 100:+.1f} pts {ci}",
                        f"{p['base_only']}/{p['cond_only']}",
                        f"{p['mcnemar_p']:.3g}",
                        "n/a" if red is None else f"{red:.0f} %",
                        "n/a" if inc is None else f"×{inc:.2f}",
                    ]
                )
        sections.append(
            Section(
                "Paired comparisons with the steered condition (same latent, prompt and seed)",
                [
                    "condition",
                    "event",
                    "pairs",
                    "steered",
                    "condition",
                    "difference [95% CI]",
                    "discordant steered/cond",
                    "McNemar p",
                    "relative reduction",
                    "increase factor",
                ],
                rows,
            )
        )
    sens = summary.get("esr_sensitivity") or {}
    if sens:
        sections.append(
            Section(
                "ESR rate by minimum gain (last − first > Δ)",
                ["condition", "Δ > 0", "Δ > 10", "Δ > 25"],
                [[c] + [f"{(sens[c][d] or 0) * 100:.1f} %" for d in ("0", "10", "25")] for c in _ordered(sens)],
            )
        )
    cal = _read(run_dir, "calibration.json")
    if cal:
        ts = cal["thresholds"]
        sections.append(
            Section(
                f"Calibration (target first-attempt score {summary.get('target')})",
                image=plots.calibration_plot(ts, summary.get("target") or 30.0),
                text=(
                    f"probabilistic bisection chooses where to measure; the threshold is where the fitted score curve crosses "
                    f"the target ('logistic': one slope shared by all latents, fitted to every trial and refined by a check, "
                    f"then every threshold moved by one common step from a pooled check shrunk toward the fit; 'isotonic': "
                    f"a decreasing fit per latent; the posterior median when the trials never bracket it). Settings "
                    f"{json.dumps(cal['settings'])}; {cal['cached']} of {len(ts)} thresholds from the cache. The score at the threshold "
                    f"is a separate check on fresh prompts."
                ),
                header=["latent", "threshold", "estimate", "score at threshold", "saturated at a bound"],
                rows=[
                    [k, v["threshold"], v.get("estimate", "median"), v["achieved"], v["saturated"]]
                    for k, v in ts.items()
                ],
            )
        )
    flu = fluency_section(run_dir, summary)
    if flu is not None:
        sections.append(flu)
    sweep = sorted((float(c.split(":")[1]), c) for c in conds if c.startswith("boost:"))
    if sweep:
        sections.append(
            Section(
                "Boost sweep (σ units of the calibrated thresholds)",
                image=plots.sweep_plot([lv for lv, _ in sweep], [summary["metrics"][c] for _, c in sweep]),
            )
        )
    det = _read(run_dir, "detectors.json")
    if det and det.get("source") == "given":  # a fixed set (--detectors): nothing was discovered
        sections.append(
            Section(
                "Off-topic detectors",
                text=f"{len(det['detectors'])} detectors given with --detectors (no discovery).",
                header=["latent", "label"],
                rows=[[d, det["labels"].get(str(d), "")] for d in det["detectors"]],
            )
        )
    elif det:
        rule = (
            f"rule: the original's strict rule; top by Cohen's d with AUC ≥ {det['min_auc']:.3f} would keep {det['n_eligible']}"
            if det.get("rule") == "strict"
            else f"rule: top by Cohen's d with AUC ≥ {det['min_auc']:.3f}; {det['n_eligible']} eligible"
        )
        text = (
            f"{len(det['detectors'])} detectors from {det['n_prompts']} held-out prompts "
            f"({det.get('n_normal', det['n_prompts'])} on-topic and {det.get('n_shuffled', det['n_prompts'])} off-topic answers; "
            f"{rule}); the original strict rule "
            f"(never on normal, ≥80% of shuffled) finds {len(det['strict_rule'])}."
        )
        if "chance_auc" in det:
            verdict = "above" if det["best_auc"] > det["chance_auc"] else "not above"
            text += (
                f" Best AUC over all latents {det['best_auc']:.3f}; chance alone reaches {det['chance_auc']:.3f} "
                f"(95th percentile of the best AUC under random relabelling), so the best candidate is {verdict} chance."
            )
        sections.append(
            Section(
                "Off-topic detectors",
                image=plots.detector_plot(det["stats"], det["detectors"]) if det["detectors"] else b"",
                text=text,
                header=["latent", "label", "AUC", "d", "normal active", "shuffled active"],
                rows=[
                    [
                        d,
                        det["labels"].get(str(d), ""),
                        det["stats"][str(d)]["auc"],
                        det["stats"][str(d)]["cohens_d"],
                        det["stats"][str(d)]["normal_active"],
                        det["stats"][str(d)]["shuffled_active"],
                    ]
                    for d in det["detectors"]
                ],
            )
        )
    rnd = _read(run_dir, "random_sets.json")
    if rnd:
        rows = [
            [
                "detectors",
                ", ".join(map(str, det["detectors"])) if det else "",
                _geo(rnd.get("detector_frequencies")),
                _geo(rnd.get("detector_magnitudes")),
            ]
        ]
        rows += [
            [f"random set {i}", ", ".join(map(str, s)), _geo(f), _geo(m)]
            for i, (s, f, m) in enumerate(zip(rnd["sets"], rnd.get("frequencies", []), rnd.get("magnitudes", [])))
        ]
        sections.append(
            Section(
                "Random-latent control (matched on firing frequency and magnitude)",
                ["set", "latents", "geometric-mean frequency", "geometric-mean activation"],
                rows,
            )
        )
    traces = _read(run_dir, "traces.json")
    if traces and traces.get("episodes"):
        sections.append(
            Section(
                "Per-token detector activation through self-correction episodes",
                image=plots.trace_plot(traces["episodes"]),
                text=json.dumps(traces.get("stats", {}), indent=1),
            )
        )
    regrade = _read(run_dir, "regrade.json")
    if regrade:
        sections.append(Section("Cross-judge agreement", ["metric", "value"], [[k, v] for k, v in regrade.items()]))
    ft = _read(run_dir, "finetune.json")
    if ft:
        sections.append(Section("Self-correction fine-tuning", text=json.dumps(ft, indent=1)))
    store = RunStore(run_dir, create=False)
    try:
        rows = list(store.rows())
        config = store.config
    finally:
        store.close()
    deltas: dict[str, list[float]] = {}
    for r in rows:
        g = next((g for g in r["grades"] if g["judge_id"] == summary["judge"] and not g["error"]), None)
        if g and g["n_attempts"] > 1:
            deltas.setdefault(r["condition"], []).append(g["last_score"] - g["first_score"])
    if deltas:
        sections.append(Section("Score change in multi-attempt responses", image=plots.delta_histogram(deltas)))
    sections.append(
        Section("Example episodes (restart phrases highlighted)", markup=examples_markup(rows, summary["judge"]))
    )
    sections.append(
        Section("Timings (s)", ["stage", "seconds"], [[k, v] for k, v in summary.get("seconds", {}).items()])
    )
    sections.append(Section("Run config", text=json.dumps(config, indent=1)))
    return write_page(
        run_dir / "report.html",
        "steerlab ESR: endogenous steering resistance",
        sections,
        meta={"judge": summary["judge"], "run": str(run_dir)},
    )


def _ci(d: dict) -> tuple[float | None, float | None]:
    """The union of the analytic and cluster-bootstrap CIs (as Estimate.fmt shows)."""
    los = [x for x in (d.get("lo"), d.get("boot_lo")) if x is not None]
    his = [x for x in (d.get("hi"), d.get("boot_hi")) if x is not None]
    return (min(los), max(his)) if los and his else (None, None)


def comparison_rows(summaries: dict[str, dict]) -> list[list[str]]:
    """One table over models: a row per (model, condition) with every metric's CI."""
    rows = []
    for name, summary in summaries.items():
        for r in summary_rows(summary):
            rows.append([name] + r)
    return rows


def finding(base: dict, organism: dict) -> str:
    """The one-sentence result of a negative/positive pair: does the instrument read the known positive, and how sure."""
    mb, mo = base["metrics"].get("steered"), organism["metrics"].get("steered")
    if not mb or not mo:
        return "No steered trials were graded, so nothing can be said yet."
    b_lo, b_hi = _ci(mb["multi_attempt_rate"])
    o_lo, o_hi = _ci(mo["multi_attempt_rate"])
    e_lo, _ = _ci(mo["esr_rate"])
    ob, oo = mb["multi_attempt_rate"]["value"] or 0.0, mo["multi_attempt_rate"]["value"] or 0.0
    separated = o_lo is not None and b_hi is not None and o_lo > b_hi
    esr_pos = e_lo is not None and e_lo > 0
    if separated and esr_pos:
        verdict = "the instrument reads the known positive"
    elif separated:
        verdict = "the instrument sees the organism's restarts, but its ESR rate's CI still includes 0"
    else:
        verdict = "the instrument does NOT separate the known positive from the base (CIs overlap)"
    return (
        f"Steered multi-attempt rate: organism {oo * 100:.1f}% [{(o_lo or 0) * 100:.1f}, {(o_hi or 0) * 100:.1f}] vs base "
        f"{ob * 100:.1f}% [{(b_lo or 0) * 100:.1f}, {(b_hi or 0) * 100:.1f}]; organism ESR rate "
        f"{(mo['esr_rate']['value'] or 0) * 100:.1f}% — {verdict} (95% CIs, n = {mo['multi_attempt_rate']['n']} and "
        f"{mb['multi_attempt_rate']['n']} steered answers)."
    )


def write_comparison(out_dir: str | Path, runs: dict[str, str | Path], *, extra: dict | None = None) -> Path:
    """One report over several runs of the same conditions (e.g. base vs organism): finding first, one table, each run's detail.

    Args:
        out_dir: where report.html and comparison.json go.
        runs: name -> run directory (each with summary.json); the first two are read as (negative, positive).
        extra: more facts to show (e.g. the organism's recipe, timings).
    """
    out_dir = Path(out_dir).expanduser()
    summaries = {}
    for name, d in runs.items():
        s = _read(Path(d), "summary.json")
        if s is None:
            raise SteerlabError(f"{d} has no summary.json; run it first.")
        summaries[name] = s
    names = list(summaries)
    headline = finding(summaries[names[0]], summaries[names[1]]) if len(names) >= 2 else ""
    sections = [
        Section("Finding", text=headline),
        Section(
            "Summary: every model, every condition (95% CIs: the wider of Wilson / t and the cluster bootstrap)",
            ["model"] + SUMMARY_HEADER,
            comparison_rows(summaries),
        ),
    ]
    comp_rows = []
    for name, s in summaries.items():
        for c, v in (s.get("comparisons") or {}).items():
            for ev in ("multi_attempt", "esr"):
                p = v[ev]
                if not p.get("n_pairs"):
                    continue
                ci = f"[{p['diff_lo'] * 100:+.1f}, {p['diff_hi'] * 100:+.1f}]" if p.get("diff_lo") is not None else ""
                comp_rows.append(
                    [
                        name,
                        c,
                        ev,
                        p["n_pairs"],
                        f"{p['base_rate'] * 100:.1f} %",
                        f"{p['cond_rate'] * 100:.1f} %",
                        f"{p['difference'] * 100:+.1f} pts {ci}",
                        f"{p['mcnemar_p']:.3g}",
                    ]
                )
    if comp_rows:
        sections.append(
            Section(
                "Paired effects against each model's steered condition (same latent, prompt and seed)",
                ["model", "condition", "event", "pairs", "steered", "condition", "difference [95% CI]", "McNemar p"],
                comp_rows,
            )
        )
    for name, s in summaries.items():
        th = s.get("thresholds") or {}
        achieved = [v["achieved"] for v in th.values() if v.get("achieved") == v.get("achieved")]
        first = (s["metrics"].get("steered") or {}).get("first_score", {}).get("value")
        sections.append(
            Section(
                f"{name}: calibration check (target {s.get('target')})",
                ["latent", "threshold", "score at threshold", "degenerate", "corrections"],
                [
                    [k, v["threshold"], v["achieved"], v.get("degenerate"), v.get("corrections", 0)]
                    for k, v in th.items()
                ],
                text=(f"mean score at the thresholds {sum(achieved) / len(achieved):.1f}; " if achieved else "")
                + (f"steered mean first score {first:.1f}" if first is not None else ""),
            )
        )
        flu = fluency_section(Path(runs[name]), s)
        if flu is not None:
            flu.title = f"{name}: {flu.title}"
            sections.append(flu)
    if extra:
        sections.append(Section("Details", text=json.dumps(extra, indent=1, default=str)))
    for name, d in runs.items():
        sections.append(
            Section(
                f"{name}: full report",
                markup=f"<p><a href='{html.escape(str(Path(d).resolve() / 'report.html'))}'>"
                f"{html.escape(str(d))}/report.html</a></p>",
            )
        )
    write_json(
        out_dir / "comparison.json",
        {
            "finding": headline,
            "runs": {k: str(v) for k, v in runs.items()},
            "metrics": {k: s["metrics"] for k, s in summaries.items()},
            "extra": extra or {},
        },
        default=str,
    )
    return write_page(
        out_dir / "report.html", "steerlab ESR: base model vs ESR organism", sections, meta={"runs": ", ".join(names)}
    )
