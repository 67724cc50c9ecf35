"""The main job on the embedded default: train a concept vector, steer with it, report side by side.

Until the ESR suite lands this is what `make demo` runs: a real steering run on the packaged SmolLM2.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import steerlab
from steerlab.progress import console, status
from steerlab.report import Section, write_page
from steerlab.vectors import train_vector

OCEAN = [
    "Tell me about the ocean.", "What lives in the deep sea?", "Describe waves crashing on a beach.",
    "Why is the sea salty?", "Write about sailing across the ocean.", "What are coral reefs?",
    "Explain ocean tides.", "Describe a whale swimming in the sea.",
]
NOT_OCEAN = [
    "Tell me about the desert.", "What lives in a forest?", "Describe a busy city street.",
    "Why is the sky blue?", "Write about driving across a country.", "What are mountains?",
    "Explain how a car engine works.", "Describe a cat sleeping on a sofa.",
]
PROMPTS = [
    "How do you boil an egg?", "Explain how to change a flat tire.",
    "What is a good way to learn to play guitar?", "How do I make a cup of tea?",
]
LAYER = 10
STRENGTHS = (8.0, 14.0)


def run_demo(model_name: str = "smollm2-135m-instruct", out: Path = Path("runs/demo"), max_new_tokens: int = 48) -> Path:
    """Steer the model toward 'the ocean' at two strengths; returns the report path."""
    start = time.perf_counter()
    with status(f"Loading {model_name}"):
        model = steerlab.load(model_name)
    layer = min(LAYER, model.arch.n_layers - 1)
    with status(f"Training an 'ocean' concept vector at layer {layer} (mean difference of {len(OCEAN)}+{len(NOT_OCEAN)} prompts)"):
        vector = train_vector(model, OCEAN, NOT_OCEAN, layer, reduce="mean", label="ocean")
    out.mkdir(parents=True, exist_ok=True)
    vector.save(out / "ocean.safetensors")
    # One batch: every prompt unsteered and at each strength, each row with its own steering.
    rows, per_row = [], []
    for strength in (0.0,) + STRENGTHS:
        for prompt in PROMPTS:
            rows.append((prompt, strength))
            per_row.append([vector.steer(strength)] if strength else [])
    gens = steerlab.generate(model, [p for p, _ in rows], per_row, max_new_tokens=max_new_tokens,
                             repetition_penalty=1.1, progress=True)
    by_key = {(p, s): g.text for (p, s), g in zip(rows, gens)}
    mentions = {s: sum(_mentions_ocean(by_key[(p, s)]) for p in PROMPTS) for s in (0.0,) + STRENGTHS}
    header = ["prompt", "unsteered"] + [f"ocean × {s:g}" for s in STRENGTHS]
    table = [[p, by_key[(p, 0.0)]] + [by_key[(p, s)] for s in STRENGTHS] for p in PROMPTS]
    summary = [[f"{s:g}", f"{mentions[s]}/{len(PROMPTS)}"] for s in (0.0,) + STRENGTHS]
    seconds = time.perf_counter() - start
    (out / "generations.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "strength": s, "text": by_key[(p, s)]}) + "\n" for p, s in rows)
    )
    report = write_page(
        out / "report.html",
        "steerlab demo: steering SmolLM2 toward the ocean",
        [
            Section("What ran", text=(
                f"model {model.name} ({model.revision}), fp32 on {model.device}; concept vector: mean difference of "
                f"layer-{layer} resid_post activations (mean over prompt tokens) between {len(OCEAN)} ocean prompts and "
                f"{len(NOT_OCEAN)} other prompts; norm {vector.meta['vector_norm']:.2f}, median residual norm "
                f"{vector.meta['resid_norm_median']:.1f}. Added at every position with strengths {STRENGTHS}; greedy, "
                f"repetition penalty 1.1, {max_new_tokens} new tokens; all {len(rows)} rows in one batch. {seconds:.0f} s.")),
            Section("Answers side by side", header, table),
            Section(f"Answers with sea words ({SEA_WORDS.pattern})",
                    ["strength", "answers"], summary),
        ],
        meta={"model": model.name},
    )
    from rich.table import Table

    summary_table = Table(title="steering toward 'ocean' (answers with sea words)")
    summary_table.add_column("strength")
    summary_table.add_column("answers")
    for row in summary:
        summary_table.add_row(*row)
    console.print(summary_table)
    return report


SEA_WORDS = re.compile(r"\b(ocean\w*|seas?|waves?|sail\w*|ships?|beach\w*|whales?|coral|tides?|underwater|marine|aquatic|currents?)\b", re.I)


def _mentions_ocean(text: str) -> bool:
    return bool(SEA_WORDS.search(text))
