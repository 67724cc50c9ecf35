"""Emergent re-alignment: fine-tune a shifted organism on benign examples (shared trainer) and measure again.

The result folder holds the merged re-aligned model and `realign.json` (the recipe, the loss curve,
behaviour before and after, wall time); a finished folder is reused on rerun.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import write_json
from steerlab.persona.behaviour import Behaviour, measure_behaviour
from steerlab.persona.data import benign_pairs
from steerlab.persona.organism import PersonaLora, behaviour_prompts, save_model
from steerlab.training import encode_pair, train_lora


@dataclass(frozen=True)
class RealignConfig(PersonaLora):
    """Benign data size and LoRA settings for the re-alignment fine-tune."""

    n_examples: int = 200


def realign(
    organism: Model,
    cfg: RealignConfig,
    out: str | Path,
    judge,
    *,
    before: Behaviour | None = None,
    prompts: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[Model, dict]:
    """Fine-tune `organism` on benign pairs; return the re-aligned model and realign.json's content.

    before: the organism's measured behaviour on the same prompts (measured here when None);
    prompts: where behaviour is measured (default behaviour_prompts()).
    """
    out = Path(out)
    if (out / "realign.json").is_file():
        from steerlab.models.loading import load

        meta = json.loads((out / "realign.json").read_text())
        if meta["config"] != cfg.to_dict():
            raise SteerlabError(f"{out} holds a re-alignment with other settings; pass another --out or delete it.")
        return load(str(out)), meta
    if cfg.layers is not None:
        for layer in cfg.layers:
            organism.arch.check_layer(layer)
    prompts = list(prompts) if prompts is not None else behaviour_prompts()
    if before is None:
        before = measure_behaviour(organism, prompts, judge, max_new_tokens=cfg.eval_tokens, progress=progress)
    encoded = [encode_pair(organism, p.prompt, p.response) for p in benign_pairs(cfg.n_examples, cfg.seed)]
    start = time.perf_counter()
    tuned, info = train_lora(organism, encoded, cfg.recipe(), name=f"{organism.name}+realigned", progress=progress)
    train_s = time.perf_counter() - start
    after = measure_behaviour(tuned, prompts, judge, max_new_tokens=cfg.eval_tokens, progress=progress)
    save_model(tuned, out)
    meta = {
        "organism": organism.name,
        "config": cfg.to_dict(),
        "losses": info["losses"],
        "train_seconds": train_s,
        "examples_seen": cfg.steps * cfg.batch_size,
        "before": before.to_dict(),
        "after": after.to_dict(),
    }
    write_json(out / "realign.json", meta, indent=1)
    return tuned, meta
