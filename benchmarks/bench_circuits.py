"""One mask-training step vs a plain forward+backward of the same batch (target: ratio ≤ 1.5).

The mask step samples hard-concrete gates for every head and MLP neuron of every layer, runs the
masked forward, the KL loss against cached teacher top-k, the backward into the mask logits and one
Adam step. The plain step is the same forward and loss with weight gradients (a training step
without the optimizer). Usage: python benchmarks/bench_circuits.py [--model smollm2-135m-instruct] [--rows 8]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import steerlab
from steerlab.circuits.data import clean_pairs
from steerlab.circuits.find import mask_step
from steerlab.circuits.forward import make_batch, mean_nll, response_logits
from steerlab.circuits.masks import UnitMasks
from steerlab.circuits.objectives import Term, fill_teachers
from steerlab.testing import tiny_model


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tiny", action="store_true", help="Use a tiny random llama instead.")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = tiny_model("llama") if args.tiny else steerlab.load(args.model)
    pairs = [(p.prompt, p.response) for p in clean_pairs()[: args.rows]]
    term = Term("keep", "removed", pairs, "kl")
    fill_teachers(model, [term])
    masks = UnitMasks(model)
    opt = torch.optim.Adam(masks.parameters(), lr=0.1)
    picks = [list(range(args.rows))]
    for p in model.hf.parameters():
        p.requires_grad_(False)

    def step_masks() -> None:
        loss, _ = mask_step(model, masks.sample(), [term], picks, "zero", None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    batch = make_batch(model, [p for p, _ in pairs], [r for _, r in pairs])

    def step_plain() -> None:
        with torch.enable_grad():
            mean_nll(response_logits(model, batch), batch).backward()
        model.hf.zero_grad(set_to_none=True)

    t_mask = _time(step_masks, args.repeats)
    for p in model.hf.parameters():
        p.requires_grad_(True)
    t_plain = _time(step_plain, args.repeats)
    for p in model.hf.parameters():
        p.requires_grad_(False)
    tokens = int(batch.attention_mask.sum())
    units = sum(z.numel() for z in masks.logits.values())
    print(f"model {model.name}: {args.rows} rows, {tokens} tokens, {units} mask units")
    print(
        f"plain forward+backward: {t_plain:.3f} s   mask step: {t_mask:.3f} s   ratio {t_mask / t_plain:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
