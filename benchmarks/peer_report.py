"""Print the peer benchmark: tokens/s and peak memory per case and batch, output agreement, and the targets."""

from __future__ import annotations

import statistics
from typing import Any

# (numerator, denominator, batches it applies to (None = all), target ratio, label)
TARGETS = [
    ("steerlab_steered", "nnsight", (8, 32), 1.0, "steered vs nnsight"),
    ("steerlab_steered", "tl_bridge", (8, 32), 1.3, "steered vs TransformerLens bridge"),
    ("steerlab_steered", "steerlab_unsteered", None, 0.97, "steered vs own unsteered"),
    ("steerlab_ablate26", "steerlab_unsteered", None, 0.9, "26-latent ablation vs unsteered"),
    ("steerlab_rows", "steerlab_steered", (32,), 0.9, "32 distinct configs vs one config"),
    ("steerlab_rows", "nnsight_rows", (32,), 2.0, "ESR workload vs nnsight (invoke per config)"),
    ("steerlab_rows", "hook_loop_rows", (32,), 5.0, "ESR workload vs hook-per-config loop"),
    ("steerlab_unsteered", "hf_generate", None, None, "unsteered vs plain generate"),
    ("hf_hook", "hf_generate", None, None, "plain hook vs plain generate"),
    ("steerlab_steered", "full_forward", (32,), 0.7, "steered decode vs a plain full forward"),
    ("steerlab_unsteered", "full_forward", None, None, "unsteered decode vs a plain full forward"),
    ("steerlab_steered_sdpa", "full_forward", (32,), None, "steered decode, SDPA step, vs a plain full forward"),
    ("steerlab_steered", "steerlab_steered_sdpa", None, None, "direct decode step vs the SDPA step (steered)"),
    ("steerlab_rows", "full_forward", None, None, "ESR workload vs a plain full forward"),
    ("vllm_unsteered", "steerlab_unsteered", None, None, "vLLM unsteered vs steerlab hf engine"),
    ("vllm_steered", "steerlab_steered", None, None, "vLLM steered vs steerlab hf engine"),
    ("vllm_rows", "steerlab_rows", None, None, "vLLM ESR workload vs steerlab hf engine"),
    ("vllm_steered", "vllm_unsteered", None, None, "vLLM steered vs its own unsteered"),
    ("vllm_steered", "full_forward", None, None, "vLLM steered vs a plain full forward"),
]

# Which case each case's tokens are checked against (greedy fp32: the same computation gives the same tokens).
REFERENCE = {
    "steerlab_unsteered": "hf_generate",
    "steerlab_steered": "hf_hook",
    "steerlab_steered_sdpa": "steerlab_steered",
    "tl_bridge": "hf_hook",
    "nnsight": "hf_hook",
    "nnsight_rows": "hook_loop_rows",
    "steerlab_rows": "hook_loop_rows",
    "vllm_unsteered": "steerlab_unsteered",
    "vllm_steered": "steerlab_steered",
    "vllm_rows": "steerlab_rows",
}


# (whole generate, the same stopped after its first token, label): the decode steps alone take the difference
PHASES = [
    ("steerlab_steered", "steerlab_steered_prefill", "steered"),
    ("steerlab_rows", "steerlab_rows_prefill", "ESR workload (a config per row)"),
]


def _upto(row: list[int], stops: set[int]) -> list[int]:
    return row[: next((k for k, t in enumerate(row) if t in stops), len(row))]


def agreement(mine: list[list[int]], ref: list[list[int]], stops: set[int]) -> int:
    """Rows whose tokens equal the reference's up to the first stop token in either row.

    The `generate`-based cases force full length with `min_new_tokens`, which masks the EOS logit, while
    steerlab's `ignore_eos` keeps EOS choosable and generates on after it: where a row's argmax is EOS the
    two continue differently by design, so only the text before the first EOS is compared.
    """
    same = 0
    for a, b in zip(mine, ref):
        n = min(len(_upto(a, stops)), len(_upto(b, stops)))
        same += a[:n] == b[:n]
    return same


def report(results: list[dict[str, Any]], meta: dict[str, Any], threads: int) -> None:
    by = {(r["case"], r["batch"]): r for r in results}
    cases = list(dict.fromkeys(r["case"] for r in results))
    batches = meta["batches"]
    stops = set(meta.get("stop_ids", []))
    print(
        f"\nmodel {meta['model']}, layer {meta['layer']}, {meta['new_tokens']} new tokens per row, greedy fp32, "
        f"best of {meta['repeats']}, torch threads {threads}"
    )
    head = "".join(f" | b={b} tok/s | b={b} peak RSS MiB (+ over loaded)" for b in batches)
    print(f"\n| case{head} | rows = reference |")
    print("|---" + "|---:|---:" * len(batches) + "|---|")
    for case in cases:
        cells, agree = [], []
        for b in batches:
            r = by.get((case, b))
            grow = r["peak_mib"] - r.get("rss_mib", r["peak_mib"]) if r else 0
            cells.append(f"{r['tok_s']:.1f} | {r['peak_mib']:.0f} (+{grow:.0f})" if r else "– | –")
            ref = by.get((REFERENCE.get(case, ""), b))
            if r and ref:
                agree.append(f"{agreement(r['tokens'], ref['tokens'], stops)}/{b}")
        note = f"{', '.join(agree)} vs {REFERENCE[case]}" if agree else ""
        print(f"| {case} | " + " | ".join(cells) + f" | {note} |")
    print(
        "\nRatios: median over the interleaved repeats of (the other case's time / this case's time) in the same repeat,"
        " with min and max; 'best' compares the best times."
    )
    print("\n| ratio | batch | median | min | max | best | target | |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for num, den, only, target, label in TARGETS:
        for b in batches:
            if only is not None and b not in only:
                continue
            a, c = by.get((num, b)), by.get((den, b))
            if not a or not c:
                continue
            best = a["tok_s"] / c["tok_s"]
            paired = sorted(t_den / t_num for t_num, t_den in zip(a["times"], c["times"]))
            value = statistics.median(paired)
            verdict = (
                "" if target is None else ("met" if value >= target else f"MISSED by {100 * (1 - value / target):.0f}%")
            )
            print(
                f"| {label} ({num} / {den}) | {b} | {value:.2f} | {paired[0]:.2f} | {paired[-1]:.2f} | {best:.2f} | "
                f"{'' if target is None else f'≥ {target}'} | {verdict} |"
            )
    phases(by, batches, meta["new_tokens"])


def phases(by: dict[tuple[str, int], dict[str, Any]], batches: list[int], new_tokens: int) -> None:
    """Split each generate case into its prompt prefill and its decode steps, paired per repeat.

    The prefill case is the same call stopped after its first token; the other new_tokens - 1 tokens of every
    row are the decode steps, whose throughput is set against the plain full forward's in the same repeat.
    """
    lines = []
    for whole, first, label in PHASES:
        for b in batches:
            w, p, f = by.get((whole, b)), by.get((first, b)), by.get(("full_forward", b))
            if not w or not p:
                continue
            decode = [tw - tp for tw, tp in zip(w["times"], p["times"])]
            share = statistics.median(tp / tw for tw, tp in zip(w["times"], p["times"]))
            rate = [b * (new_tokens - 1) / d for d in decode if d > 0]
            versus = ""
            if f and rate:
                paired = sorted(r / (b * new_tokens / tf) for r, tf in zip(rate, f["times"]))
                versus = f"{statistics.median(paired):.2f} | {paired[0]:.2f} | {paired[-1]:.2f}"
            lines.append(
                f"| {label} | {b} | {statistics.median(p['times']):.3f} | {100 * share:.0f}% | "
                f"{statistics.median(rate) if rate else float('nan'):.1f} | {versus or '– | – | –'} |"
            )
    if lines:
        print(
            "\nPhases: the prompt's prefill (the case stopped after one token) and the decode steps (the rest), medians"
            " over the paired repeats; the last columns set the decode steps' tok/s against the full forward's."
        )
        print("\n| case | batch | prefill s | prefill share | decode-step tok/s | vs full forward median | min | max |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(lines))
