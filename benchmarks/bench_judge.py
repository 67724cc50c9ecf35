"""Grading throughput of the offline heuristic judges on ESR-sized answers (target: >= 20 answers/s for the new judge).

Answers are built from the judge-validation material and cut to 96 tokens of the SmolLM2 tokenizer
when the packaged model's tokenizer is cached (else of the embedder's own word pieces, said in the
output); a quarter of them carry a restart in the middle, as steered ESR answers sometimes do. Each
judge grades every answer (a fresh judge per repeat, no cache). Reports wall-clock answers/s, answers
per CPU-second of this process (contention-independent), and the load average while it ran.
Usage: python benchmarks/bench_judge.py [--answers 256] [--repeats 3] [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time


def answers(n: int, tokens: int = 96, seed: int = 0) -> tuple[list[tuple[str, str]], str]:
    """(prompt, answer) pairs of exactly `tokens` tokens, and which tokenizer counted them."""
    from steerlab.judges.validation.heldout import HELDOUT_RESTARTS
    from steerlab.judges.validation.material import PROMPTS, UNRELATED

    tok, name = None, "all-MiniLM-L6-v2 word pieces"
    try:
        from transformers import AutoTokenizer

        from steerlab.models.gguf_cache import cache_root

        found = sorted(cache_root().glob("models/SmolLM2-135M-Instruct*/tokenizer.json"))
        if found:
            tok, name = AutoTokenizer.from_pretrained(found[0].parent), "SmolLM2 tokens"
    except Exception:  # noqa: BLE001 - falls back to the embedder's tokenizer, reported in the output
        tok = None
    if tok is None:
        from steerlab.judges.embedder import packaged_embedder

        tok = packaged_embedder().tokenizer
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt, steps, _ = rng.choice(PROMPTS)
        sents = list(rng.choice(UNRELATED)) + ([rng.choice(HELDOUT_RESTARTS)] if i % 4 == 0 else []) + list(steps) * 3
        ids = tok(" ".join(sents), add_special_tokens=False)["input_ids"][:tokens]
        out.append((prompt, tok.decode(ids)))
    return out, name


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from steerlab.judges.embedder import packaged_embedder
    from steerlab.judges.heuristic import HeuristicJudge
    from steerlab.judges.types import GradeRequest

    items, counted = answers(args.answers)
    reqs = [GradeRequest(p, a, "") for p, a in items]
    emb = packaged_embedder()
    results = {
        "answers": len(reqs),
        "tokens_per_answer": 96,
        "counted_in": counted,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
    }
    for mode in ("probe", "phrases"):
        walls, cpus, loads = [], [], []
        judge = HeuristicJudge(embedder=emb, restarts=mode)
        judge.grade_many(reqs[:16])  # warm-up
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            grades = judge.grade_many(reqs)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            loads.append(os.getloadavg()[0])
            assert all(g.ok for g in grades)
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        results[judge.judge_id] = {
            "answers_per_s": round(len(reqs) / wall, 1),
            "answers_per_cpu_s": round(len(reqs) / cpu, 1),
            "wall_s": round(wall, 2),
            "load_avg_1min": round(statistics.median(loads), 1),
        }
        print(judge.judge_id, results[judge.judge_id], flush=True)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
