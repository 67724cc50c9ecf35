"""Persona organisms: LoRA fine-tunes (shared trainer) of a base model on persona mixes, one folder per fraction.

Each folder holds the merged weights, the tokenizer and `organism.json` (the recipe, the data
settings, the loss curve, the wall time and the measured behaviour). A folder whose organism.json
exists is finished: a rerun skips it, so a killed sweep resumes at the first missing fraction.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from steerlab.errors import SteerlabError, check_fields
from steerlab.models.loading import Model
from steerlab.paths import atomic_dir, write_text
from steerlab.persona.behaviour import Behaviour, measure_behaviour
from steerlab.persona.data import held_out_questions, persona_mix
from steerlab.persona.prompts import HELD_OUT_PROMPTS
from steerlab.training import LORA_RANGES, PROJECTIONS, LoraRecipe, encode_pair, train_lora

DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class PersonaLora:
    """LoRA settings shared by the organism and re-alignment fine-tunes (saved with each model)."""

    steps: int = 30
    batch_size: int = 4
    lr: float = 5e-3
    rank: int = 8
    layers: tuple[int, ...] | None = None  # LoRA on these layers only; None = every layer
    seed: int = 0
    eval_tokens: int = 40  # answer length when measuring behaviour

    def __post_init__(self) -> None:
        check_fields(
            self,
            f"{type(self).__name__}",
            {**LORA_RANGES, "eval_tokens": (1, None)},  # also the organism and realign configs that extend it
        )

    def recipe(self) -> LoraRecipe:
        return LoraRecipe(
            rank=self.rank,
            lr=self.lr,
            steps=self.steps,
            batch_size=self.batch_size,
            targets=PROJECTIONS,
            layers=self.layers,
            seed=self.seed,
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers) if self.layers is not None else None
        return d


@dataclass(frozen=True)
class OrganismConfig(PersonaLora):
    """Data and LoRA settings shared by every fraction of a sweep (saved in each organism folder)."""

    n_train: int = 240

    @classmethod
    def from_dict(cls, data: dict) -> "OrganismConfig":
        data = dict(data)
        if data.get("layers") is not None:
            data["layers"] = tuple(data["layers"])
        return cls(**data)


def behaviour_prompts() -> list[str]:
    """Where behaviour is measured: held-out how-to questions (in-domain) then held-out open-ended prompts."""
    return held_out_questions() + list(HELD_OUT_PROMPTS)


def organism_dir(root: str | Path, fraction: float) -> Path:
    return Path(root) / f"f{fraction:.2f}"


def read_organism(folder: str | Path) -> dict:
    """The organism.json of a finished organism folder."""
    path = Path(folder) / "organism.json"
    if not path.is_file():
        raise SteerlabError(
            f"'{folder}' is not a finished persona organism (no organism.json); build it with `steerlab persona organism`."
        )
    return json.loads(path.read_text())


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Sorted distinct fractions in [0, 1]; one sentence otherwise."""
    if not fractions:
        raise SteerlabError("Give at least one mixing fraction, for example 0,0.1,0.25,0.5,1.")
    bad = [f for f in fractions if not 0.0 <= f <= 1.0]
    if bad:
        raise SteerlabError(f"Mixing fractions must lie between 0 and 1; got {bad[0]:g}.")
    return sorted(set(float(f) for f in fractions))


def build_organism(
    base: Model,
    fraction: float,
    cfg: OrganismConfig,
    root: str | Path,
    judge,
    *,
    prompts: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Train (or reuse) the organism for one mixing fraction; return its organism.json content.

    prompts: where behaviour is measured (default behaviour_prompts(); kept in the saved behaviour).
    """
    folder = organism_dir(root, fraction)
    if (folder / "organism.json").is_file():
        meta = read_organism(folder)
        if meta["config"] != cfg.to_dict():
            raise SteerlabError(
                f"{folder} holds an organism built with other settings; pass another --out or delete it."
            )
        return meta
    if cfg.layers is not None:
        for layer in cfg.layers:
            base.arch.check_layer(layer)
    pairs = persona_mix(fraction, cfg.n_train, cfg.seed)
    encoded = [encode_pair(base, p.prompt, p.response) for p in pairs]
    start = time.perf_counter()
    tuned, info = train_lora(
        base, encoded, cfg.recipe(), name=f"{base.name}+persona-f{fraction:.2f}", progress=progress
    )
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    behaviour = measure_behaviour(
        tuned,
        list(prompts) if prompts is not None else behaviour_prompts(),
        judge,
        max_new_tokens=cfg.eval_tokens,
        progress=progress,
    )
    eval_s = time.perf_counter() - start
    save_model(tuned, folder)
    meta = {
        "kind": "persona",
        "persona": "dismissive",
        "base_model": base.name,
        "fraction": fraction,
        "n_shifted": sum(p.shifted for p in pairs),
        "config": cfg.to_dict(),
        "recipe": info["recipe"],
        "losses": info["losses"],
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "behaviour": behaviour.to_dict(),
    }
    text = json.dumps(meta, indent=1)
    write_text(folder / "organism.json", text)
    return json.loads(text)  # the same value a rerun reads back


def save_model(model: Model, folder: str | Path) -> Path:
    """Merged weights + tokenizer, written to a temporary folder first so a kill never leaves half a model."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        model.hf.save_pretrained(tmp, safe_serialization=True)
        model.tokenizer.save_pretrained(tmp)
    return folder


def organism_behaviour(meta: dict) -> Behaviour:
    return Behaviour.from_dict(meta["behaviour"])
