"""Steered generation side by side: transformers+hook, TransformerLens, nnsight and steerlab, in one run.

Same prompts (chat-formatted SmolLM2 token ids), same number of new tokens (EOS never stops a row),
greedy, fp32, one steering vector added after one decoder layer. Every case runs in its own
subprocess so its peak RSS is its own; batch sizes run in ascending order inside it.

    python benchmarks/bench_peers.py                      # batches 1,8,32, 32 new tokens
    python benchmarks/bench_peers.py --batches 2 --new-tokens 4 --repeats 1   # smoke run

Cases (one vector = the same delta on every row; rows = a different latent and strength per row):
    hf_generate        plain `generate`, unsteered (reference)
    hf_hook            `generate` + a hand-written forward hook on layer L (one vector)
    tl_bridge          TransformerLens TransformerBridge `generate` + hook on blocks.L.hook_resid_post
    nnsight            nnsight `generate`, `layers[L].output += v` on every step
    steerlab_unsteered / steerlab_steered / steerlab_rows / steerlab_ablate26
    nnsight_rows       nnsight, one invoke per row (its batched form of per-row steering)
    hook_loop_rows     one `generate` + hook per configuration, one row at a time
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_cases import CASES, PEER_CASES, load_workload  # noqa: E402
from peer_report import report  # noqa: E402


def build_workload(args: argparse.Namespace, path: Path) -> list[int]:
    """Prompts, per-row SAE-latent deltas and ablation latents, computed once so every case gets the same."""
    import steerlab
    from steerlab.sae.default import default_sae

    from bench_generate import prompts_for

    model = steerlab.load(args.model)
    sae = default_sae(args.model, train=False, progress=False)
    n = max(args.batches)
    prompts = prompts_for(n)
    ids = [model.encode(p) for p in prompts]
    latents = torch.arange(n) * (sae.d_sae // n) + 7  # n distinct latents spread over the dictionary
    strengths = torch.linspace(4.0, 12.0, n)
    rows = steerlab.SteerLatent(sae, latent=latents, strength=strengths, layer=args.layer).as_add_vector().delta()
    torch.save({
        "model_dir": str(model.hf.name_or_path), "model": args.model, "layer": args.layer, "ids": ids, "prompts": prompts,
        "pad_id": model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0,
        "stop_ids": list(model.stop_token_ids), "vector": rows[0].clone(), "row_vectors": rows,
        "latents": latents, "strengths": strengths, "ablate": [int(x) for x in torch.arange(26) * 97 + 3],
        "new_tokens": args.new_tokens,
    }, path)
    return list(model.stop_token_ids)


def _memory_kib() -> tuple[int, int]:
    """(current RSS, peak RSS since the last reset) of this process, in KiB (Linux /proc)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def run_case(name: str, workload_path: Path, batches: list[int], repeats: int) -> None:
    """Child mode: set up one case, then time it at each batch size; one JSON line per batch on stdout."""
    work = load_workload(workload_path)
    t0 = time.perf_counter()
    make = CASES[name](work)  # loads the model; returns batch -> (callable that returns token rows)
    load_s = time.perf_counter() - t0
    make(1)()  # warm-up (first-call allocations, lazy imports), untimed
    for batch in batches:
        fn = make(batch)
        _reset_peak()
        base, _ = _memory_kib()
        times, tokens = [], None
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - start)
            tokens = tokens or out  # the first run's tokens are checked against the reference case
        _, peak = _memory_kib()
        best = min(times)
        line = {"case": name, "batch": batch, "tok_s": batch * work["new_tokens"] / best, "best_s": best, "times": times,
                "load_s": load_s, "rss_mib": base / 1024, "peak_mib": peak / 1024, "tokens": tokens}
        print("RESULT " + json.dumps(line), flush=True)


def run_children(args: argparse.Namespace, workload: Path) -> list[dict[str, Any]]:
    results = []
    env = dict(os.environ)
    for name in args.cases:
        if name in PEER_CASES and not _peer_available(name, args):
            how = "make bench builds .venv-tl" if name == "tl_bridge" else "pip install -e '.[bench]'"
            print(f"  {name:20s} skipped: {PEER_CASES[name]} is not installed ({how})", flush=True)
            continue
        batches = [b for b in args.batches if not (name == "hook_loop_rows" and b > args.loop_max_batch)]
        python = args.tl_python if name == "tl_bridge" and args.tl_python else sys.executable
        cmd = [python, __file__, "--child", name, "--workload", str(workload), "--repeats", str(args.repeats),
               "--batches", ",".join(map(str, batches))]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        lines = [json.loads(x[7:]) for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            print(f"  {name:20s} FAILED (exit {proc.returncode}):\n{tail}", flush=True)
        for line in lines:
            print(f"  {name:20s} batch {line['batch']:3d}: {line['tok_s']:8.1f} tok/s  peak {line['peak_mib']:7.0f} MiB", flush=True)
        print(f"  {name:20s} done in {time.perf_counter() - start:.0f} s", flush=True)
        results.extend(lines)
    return results


def _peer_available(name: str, args: argparse.Namespace) -> bool:
    """The peer's package imports in the interpreter its case runs in (TransformerLens: --tl-python)."""
    if name == "tl_bridge" and args.tl_python:
        check = subprocess.run([args.tl_python, "-c", f"import {PEER_CASES[name]}"], capture_output=True)
        return check.returncode == 0
    import importlib.util

    return importlib.util.find_spec(PEER_CASES[name]) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layer", type=int, default=18)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--loop-max-batch", type=int, default=32, help="Largest batch the hook-per-configuration loop runs.")
    parser.add_argument("--json", help="Also write every measurement here.")
    parser.add_argument("--tl-python", help="Python of the TransformerLens venv (benchmarks/tl-requirements.txt); "
                        "TransformerLens 4.3 decodes wrongly with its KV cache under our transformers 5.24.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = sorted(int(b) for b in args.batches.split(","))
    if args.child:
        run_case(args.child, Path(args.workload), args.batches, args.repeats)
        return
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {list(CASES)}")
    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload.pt"
        print("building the workload (prompts, deltas) ...", flush=True)
        stop_ids = build_workload(args, workload)
        results = run_children(args, workload)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    meta = {"model": args.model, "layer": args.layer, "new_tokens": args.new_tokens, "repeats": args.repeats,
            "batches": args.batches, "stop_ids": stop_ids}
    report(results, meta, torch.get_num_threads())


if __name__ == "__main__":
    main()
