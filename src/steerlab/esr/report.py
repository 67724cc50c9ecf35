"""`steerlab esr report RUN`: one self-contained HTML page with a plot per experiment, CIs and examples."""

from __future__ import annotations

import html
import json
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.esr import plots
from steerlab.esr.metrics import Estimate
from steerlab.judges.restarts import restart_positions
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
        rows.append([c, str(summary["n_trials"][c]), _est(m["first_score"]), _est(m["multi_attempt_rate"], 100) + " %",
                     _est(m["esr_rate"], 100) + " %", _est(m["improvement_rate"], 100) + " %", _est(m["mean_score_improvement"]),
                     _est(m["mean_attempts"], 1, 2), f"{(m['degraded_rate']['value'] or 0) * 100:.0f} %"])
    return rows


SUMMARY_HEADER = ["condition", "n", "first score", "multi-attempt", "ESR", "improved | multi", "mean Δ | multi", "attempts", "degraded"]


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
        parts.append(f"<h3>{html.escape(r['condition'])} · latent {r['latent']} ({html.escape(r['label'] or '')}) · boost {r['strength']}</h3>"
                     f"<p><b>prompt:</b> {html.escape(r['prompt'])}<br><b>attempt scores:</b> {scores}</p><pre>{highlight(r['response'] or '')}</pre>")
    return "".join(parts)


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
    note = ("Trials left out of the metrics (no attempt found, judge error, or not graded yet): " + json.dumps(excluded)) if excluded else ""
    sections.append(Section("Summary (95% CIs: the wider of Wilson / t and the cluster bootstrap over latents)", SUMMARY_HEADER, summary_rows(summary), text=note))
    if main:
        sections.append(Section("Conditions (error bars: the wider of the analytic and cluster-bootstrap 95% CIs)", image=plots.condition_bars(summary["metrics"], main, summary.get("target"))))
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
                rows.append([c, ev, p["n_pairs"], f"{p['base_rate'] * 100:.1f} %", f"{p['cond_rate'] * 100:.1f} %",
                             f"{p['difference'] * 100:+.1f} pts {ci}", f"{p['base_only']}/{p['cond_only']}", f"{p['mcnemar_p']:.3g}",
                             "n/a" if red is None else f"{red:.0f} %", "n/a" if inc is None else f"×{inc:.2f}"])
        sections.append(Section("Paired comparisons with the steered condition (same latent, prompt and seed)",
                                ["condition", "event", "pairs", "steered", "condition", "difference [95% CI]", "discordant steered/cond", "McNemar p",
                                 "relative reduction", "increase factor"], rows))
    sens = summary.get("esr_sensitivity") or {}
    if sens:
        sections.append(Section("ESR rate by minimum gain (last − first > Δ)", ["condition", "Δ > 0", "Δ > 10", "Δ > 25"],
                                [[c] + [f"{(sens[c][d] or 0) * 100:.1f} %" for d in ("0", "10", "25")] for c in _ordered(sens)]))
    cal = _read(run_dir, "calibration.json")
    if cal:
        ts = cal["thresholds"]
        sections.append(Section(f"Calibration (target first-attempt score {summary.get('target')})",
                                image=plots.calibration_plot(ts, summary.get("target") or 30.0),
                                text=(f"probabilistic bisection chooses where to measure; the threshold is where a decreasing isotonic fit of every "
                                      f"search trial crosses the target (the posterior median when the trials never bracket it). Settings "
                                      f"{json.dumps(cal['settings'])}; {cal['cached']} of {len(ts)} thresholds from the cache. The score at the threshold "
                                      f"is a separate check on fresh prompts."),
                                header=["latent", "threshold", "estimate", "score at threshold", "saturated at a bound"],
                                rows=[[k, v["threshold"], v.get("estimate", "median"), v["achieved"], v["saturated"]] for k, v in ts.items()]))
    sweep = sorted((float(c.split(":")[1]), c) for c in conds if c.startswith("boost:"))
    if sweep:
        sections.append(Section("Boost sweep (σ units of the calibrated thresholds)",
                                image=plots.sweep_plot([lv for lv, _ in sweep], [summary["metrics"][c] for _, c in sweep])))
    det = _read(run_dir, "detectors.json")
    if det and det.get("source") == "given":  # a fixed set (--detectors): nothing was discovered
        sections.append(Section("Off-topic detectors", text=f"{len(det['detectors'])} detectors given with --detectors (no discovery).",
                                header=["latent", "label"], rows=[[d, det["labels"].get(str(d), "")] for d in det["detectors"]]))
    elif det:
        rule = (f"rule: the original's strict rule; top by Cohen's d with AUC ≥ {det['min_auc']:.3f} would keep {det['n_eligible']}"
                if det.get("rule") == "strict" else f"rule: top by Cohen's d with AUC ≥ {det['min_auc']:.3f}; {det['n_eligible']} eligible")
        text = (f"{len(det['detectors'])} detectors from {det['n_prompts']} held-out prompts "
                f"({det.get('n_normal', det['n_prompts'])} on-topic and {det.get('n_shuffled', det['n_prompts'])} off-topic answers; "
                f"{rule}); the original strict rule "
                f"(never on normal, ≥80% of shuffled) finds {len(det['strict_rule'])}.")
        if "chance_auc" in det:
            verdict = "above" if det["best_auc"] > det["chance_auc"] else "not above"
            text += (f" Best AUC over all latents {det['best_auc']:.3f}; chance alone reaches {det['chance_auc']:.3f} "
                     f"(95th percentile of the best AUC under random relabelling), so the best candidate is {verdict} chance.")
        sections.append(Section("Off-topic detectors", image=plots.detector_plot(det["stats"], det["detectors"]) if det["detectors"] else b"",
                                text=text, header=["latent", "label", "AUC", "d", "normal active", "shuffled active"],
                                rows=[[d, det["labels"].get(str(d), ""), det["stats"][str(d)]["auc"], det["stats"][str(d)]["cohens_d"],
                                       det["stats"][str(d)]["normal_active"], det["stats"][str(d)]["shuffled_active"]] for d in det["detectors"]]))
    rnd = _read(run_dir, "random_sets.json")
    if rnd:
        rows = [["detectors", ", ".join(map(str, det["detectors"])) if det else "", _geo(rnd.get("detector_frequencies")), _geo(rnd.get("detector_magnitudes"))]]
        rows += [[f"random set {i}", ", ".join(map(str, s)), _geo(f), _geo(m)]
                 for i, (s, f, m) in enumerate(zip(rnd["sets"], rnd.get("frequencies", []), rnd.get("magnitudes", [])))]
        sections.append(Section("Random-latent control (matched on firing frequency and magnitude)",
                                ["set", "latents", "geometric-mean frequency", "geometric-mean activation"], rows))
    traces = _read(run_dir, "traces.json")
    if traces and traces.get("episodes"):
        sections.append(Section("Per-token detector activation through self-correction episodes",
                                image=plots.trace_plot(traces["episodes"]), text=json.dumps(traces.get("stats", {}), indent=1)))
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
    sections.append(Section("Example episodes (restart phrases highlighted)", markup=examples_markup(rows, summary["judge"])))
    sections.append(Section("Timings (s)", ["stage", "seconds"], [[k, v] for k, v in summary.get("seconds", {}).items()]))
    sections.append(Section("Run config", text=json.dumps(config, indent=1)))
    return write_page(run_dir / "report.html", "steerlab ESR: endogenous steering resistance", sections,
                      meta={"judge": summary["judge"], "run": str(run_dir)})
