"""Per-token detector activations through self-correction episodes (experiments 6 and 9).

Each response is read out teacher-forced on the exact token ids it was generated with, with the
steering on (experiment 6) or off (experiment 9) — an explicit flag here. The restart phrase the
judge rule splits at is mapped from characters to tokens, and detector activity before vs after the
restart is compared across episodes (one-sided Wilcoxon signed-rank) and against unsteered answers.
"""

from __future__ import annotations

import json
from typing import Sequence

from steerlab.esr.config import EsrConfig
from steerlab.esr.readout import readout
from steerlab.esr.setup import Resources
from steerlab.esr.trials import trial_interventions
from steerlab.judges.restarts import restart_positions
from steerlab.store import RunStore


def char_to_token(model, token_ids: Sequence[int], char_pos: int) -> int:
    """Index of the token whose decoded text covers char_pos (decoded prefix lengths)."""
    for i in range(1, len(token_ids) + 1):
        if len(model.tokenizer.decode(token_ids[:i], skip_special_tokens=True)) > char_pos:
            return i - 1
    return len(token_ids) - 1


def collect_traces(
    store: RunStore,
    res: Resources,
    cfg: EsrConfig,
    detectors: Sequence[int],
    *,
    steered: bool = True,
    condition: str = "steered",
    limit: int = 24,
) -> dict:
    """Traces of multi-attempt episodes of one condition, plus mean detector activity on baseline answers."""
    if not detectors:
        return {"episodes": [], "note": "no detectors in this run", "stats": episode_stats([], [])}
    grades = store.grades(res.judge.judge_id, res.judge.rubric_version)
    trials = {t.key: t for t in store.trials()}
    episodes, baseline = [], []
    for key, g in grades.items():
        t = trials.get(key)
        if t is None or not g.ok:
            continue
        gen = store.generation(key)
        if not gen or not gen["token_ids"]:
            continue
        ids = json.loads(gen["token_ids"])
        if t.condition == condition and g.n_attempts > 1 and len(episodes) < limit:
            restarts = restart_positions(gen["text"])
            episodes.append((t, ids, g, restarts[0][0] if restarts else None, gen["text"]))
        elif t.condition == "baseline" and len(baseline) < limit:
            baseline.append((t, ids))
    out_eps = []
    if episodes:
        seqs = [res.model.encode(t.prompt) + ids for t, ids, *_ in episodes]
        # the run's own builder: the readout replays each trial's steering and ablation as it was generated
        ivs = [trial_interventions(cfg, res.sae, [t]) if steered else [] for t, *_ in episodes]
        acts = readout(res.model, seqs, res.sae, latents=list(detectors), interventions=ivs)
        for (t, ids, g, rchar, text), a, seq in zip(episodes, acts, seqs):
            start = len(seq) - len(ids)
            series = a[start:].sum(1)
            rtok = char_to_token(res.model, ids, rchar) if rchar is not None else None
            before = float(series[:rtok].mean()) if rtok else None
            after = float(series[rtok:].mean()) if rtok is not None and rtok < len(series) else None
            out_eps.append(
                {
                    "latent": t.latent,
                    "prompt": t.prompt,
                    "seed": t.seed,
                    "scores": [x.score for x in g.attempts],
                    "restart_token": rtok,
                    "detector_sum": [round(float(x), 5) for x in series],
                    "before": before,
                    "after": after,
                }
            )
    base_means = []
    if baseline:
        acts = readout(
            res.model, [res.model.encode(t.prompt) + ids for t, ids in baseline], res.sae, latents=list(detectors)
        )
        base_means = [float(a[-len(ids) :].sum(1).mean()) for a, (t, ids) in zip(acts, baseline)]
    return {"episodes": out_eps, "steered_readout": steered, "stats": episode_stats(out_eps, base_means)}


def episode_stats(episodes: list[dict], baseline_means: list[float]) -> dict:
    """Before- vs after-restart detector activity (paired, one-sided Wilcoxon) and the unsteered baseline level."""
    pairs = [(e["before"], e["after"]) for e in episodes if e["before"] is not None and e["after"] is not None]
    out: dict = {
        "n_episodes": len(episodes),
        "n_paired": len(pairs),
        "baseline_mean": sum(baseline_means) / len(baseline_means) if baseline_means else None,
        "n_baseline": len(baseline_means),
    }
    if pairs:
        out["before_mean"] = sum(b for b, _ in pairs) / len(pairs)
        out["after_mean"] = sum(a for _, a in pairs) / len(pairs)
    if len(pairs) >= 2 and any(b != a for b, a in pairs):
        from scipy.stats import wilcoxon

        out["wilcoxon_p_before_gt_after"] = float(
            wilcoxon([b for b, _ in pairs], [a for _, a in pairs], alternative="greater").pvalue
        )
    return out
