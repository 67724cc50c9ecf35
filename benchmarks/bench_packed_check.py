"""What the packed path's content check costs: steered decode at batch 32, side by side, interleaved.

Three cases on the packaged SmolLM2, the same prompts and per-row steering, every row forced to the full
length:
- `checked`: the shipped path; each `generate` call hashes every weight and re-packs any that changed;
- `unchecked`: the same packed weights with the per-call hash replaced by the weight's address (what
  the cache was keyed on before issue 19; wrong after edits through `.data`, timed here only to price
  the check);
- `plain`: no packed matmuls at all.

Each repeat runs the cases in turn (order rotated), so machine drift hits every case alike; ratios are
the median over the repeats, with min and max.

    python benchmarks/bench_packed_check.py [--batch 32] [--new-tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import steerlab
from steerlab.engine import packed
from steerlab.engine.options import EngineOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layer", type=int, default=15)
    args = parser.parse_args()

    model = steerlab.load(args.model)
    prompts = [f"Explain how to do task number {i} at home." for i in range(args.batch)]
    torch.manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(args.batch, model.arch.d_model), dim=-1)
    steer = [steerlab.AddVector(args.layer, vectors, torch.linspace(2.0, 8.0, args.batch))]
    real_digest = packed.tensor_digest
    by_address: dict[tuple[int, int], str] = {}  # the unchecked case: the digest looked up by address, never recomputed

    def unchecked_digest(w: torch.Tensor) -> str:
        key = (w.data_ptr(), w._version)
        if key not in by_address:
            by_address[key] = real_digest(w)
        return by_address[key]

    def run(case: str) -> float:
        speed = EngineOptions(packed=case != "plain")
        packed.tensor_digest = real_digest if case == "checked" else unchecked_digest
        start = time.perf_counter()
        steerlab.generate(
            model, prompts, steer, max_new_tokens=args.new_tokens, ignore_eos=True, progress=False, engine_options=speed
        )
        return args.batch * args.new_tokens / (time.perf_counter() - start)

    cases = ["checked", "unchecked", "plain"]
    for case in cases:
        run(case)  # warm-up: packs the weights, fills allocator pools
    rates: dict[str, list[float]] = {c: [] for c in cases}
    for rep in range(args.repeats):
        for case in cases[rep % 3 :] + cases[: rep % 3]:
            rates[case].append(run(case))
    packed.tensor_digest = real_digest
    from steerlab.models.digest import weights_digest

    start = time.perf_counter()
    weights_digest(model.hf.named_parameters())  # what one fingerprint costs; the per-call check is the Linear subset
    print(f"hash of all weights once: {1000 * (time.perf_counter() - start):.0f} ms")
    print(f"{'case':<10} {'median tok/s':>13} {'min':>8} {'max':>8}")
    for case in cases:
        r = rates[case]
        print(f"{case:<10} {statistics.median(r):13.1f} {min(r):8.1f} {max(r):8.1f}")
    for a, b in (("checked", "unchecked"), ("checked", "plain")):
        ratios = [x / y for x, y in zip(rates[a], rates[b])]
        print(f"{a}/{b}: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
