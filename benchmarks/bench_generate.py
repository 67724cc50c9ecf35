"""Side-by-side decode throughput on the packaged SmolLM2: plain `transformers` generate vs steerlab.

One run, same prompts, same greedy settings, every row forced to the full length. Prints tokens/s
for plain HF generate, steerlab unsteered, and steerlab with a different steering vector and
strength on every row at one layer, plus their ratios.

    python benchmarks/bench_generate.py [--batch 32] [--new-tokens 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import steerlab
from steerlab import AddVector

TOPICS = [
    "boil an egg",
    "change a flat tire",
    "tie a tie",
    "plant tomatoes",
    "bake bread",
    "write a cover letter",
    "learn to swim",
    "clean a laptop keyboard",
    "make cold brew coffee",
    "fold a fitted sheet",
    "start a compost heap",
    "paint a room",
    "sharpen a kitchen knife",
    "train a puppy to sit",
    "set up a fish tank",
    "iron a shirt",
    "make pancakes",
    "back up a phone",
    "jump-start a car",
    "knit a scarf",
    "build a birdhouse",
    "read a map",
    "brew green tea",
    "hang a picture frame",
    "save money on groceries",
    "study for an exam",
    "wash a wool sweater",
    "grow basil indoors",
    "replace a light bulb",
    "make a paper airplane",
    "pack for a camping trip",
    "unclog a sink",
]


def prompts_for(n: int) -> list[str]:
    return [f"Explain how to {TOPICS[i % len(TOPICS)]}." + (" Keep it short." if i % 3 else "") for i in range(n)]


def time_it(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--layer", type=int, default=15)
    args = parser.parse_args()

    model = steerlab.load(args.model)
    tok, hf = model.tokenizer, model.hf
    prompts = prompts_for(args.batch)
    encoded = [model.encode(p) for p in prompts]
    n_tokens = args.batch * args.new_tokens
    torch.manual_seed(0)
    vectors = torch.randn(args.batch, model.arch.d_model)
    vectors = vectors / vectors.norm(dim=-1, keepdim=True)
    strengths = torch.linspace(1.0, 8.0, args.batch)
    per_row = [AddVector(args.layer, vectors, strengths)]

    tok.padding_side = "left"
    batch = tok.pad({"input_ids": encoded}, return_tensors="pt")

    @torch.inference_mode()
    def hf_generate():
        return hf.generate(
            **batch,
            max_new_tokens=args.new_tokens,
            min_new_tokens=args.new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )

    def ours(ivs):
        return lambda: steerlab.generate(
            model, prompts, ivs, max_new_tokens=args.new_tokens, ignore_eos=True, batch_size=args.batch
        )

    # Warm up each path once, then time them interleaved.
    check_hf = hf_generate()
    check_ours = ours(None)()
    runs = {
        "transformers generate": hf_generate,
        "steerlab unsteered": ours(None),
        "steerlab steered (per-row)": ours(per_row),
    }
    for fn in runs.values():
        fn()
    best = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            best[name].append(time_it(fn, 1))
    rates = {name: n_tokens / min(ts) for name, ts in best.items()}

    # Plain generate with min_new_tokens forbids EOS; ignore_eos lets EOS through without stopping,
    # so compare each row up to its first EOS.
    width = check_hf.shape[1] - batch["input_ids"].shape[1]
    stops = set(model.stop_token_ids)

    def upto_eos(ids):
        return ids[: next((k for k, t in enumerate(ids) if t in stops), len(ids))]

    same = 0
    for i, g in enumerate(check_ours):
        ours_ids = upto_eos(g.token_ids)
        same += check_hf[i, -width:].tolist()[: len(ours_ids)] == ours_ids
    print(
        f"\nmodel {model.name}, batch {args.batch}, {args.new_tokens} new tokens, greedy fp32, torch threads {torch.get_num_threads()}"
    )
    print(f"greedy outputs identical to transformers generate (up to EOS): {same}/{args.batch} rows")
    print(f"{'path':32s} {'tokens/s':>10s} {'best s':>8s} {'median s':>9s}")
    for name, ts in best.items():
        print(f"{name:32s} {rates[name]:10.1f} {min(ts):8.2f} {statistics.median(ts):9.2f}")
    base = rates["transformers generate"]
    unsteered = rates["steerlab unsteered"]
    steered = rates["steerlab steered (per-row)"]
    print(f"\nsteerlab unsteered / transformers generate = {unsteered / base:.2f}  (target >= 1.0)")
    print(f"steerlab steered / steerlab unsteered      = {steered / unsteered:.2f}  (target >= 0.95)")
    print(f"steerlab steered / transformers generate   = {steered / base:.2f}")


if __name__ == "__main__":
    main()
