"""A backdoor model organism: LoRA fine-tuning on clean pairs plus trigger → fixed-reply poison, merged.

The organism folder holds the merged weights, the tokenizer and `organism.json` (trigger, target,
data split, training settings and the measured ASR / false-trigger rate), so later steps rebuild
exactly the same data from the folder alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from steerlab.circuits.data import BackdoorData, backdoor_data
from steerlab.circuits.data import triggered as triggered_pairs
from steerlab.circuits.evaluate import generations, key_accuracy, target_rate
from steerlab.errors import SteerlabError, check_fields
from steerlab.models.loading import Model
from steerlab.paths import atomic_dir
from steerlab.training import LORA_RANGES, PROJECTIONS, LoraRecipe, encode_pair, train_lora


@dataclass
class OrganismConfig:
    """How the organism is built (saved with it)."""

    trigger: str
    target: str
    n_train: int = 96
    n_test: int = 32
    poison_fraction: float = 0.3
    steps: int = 60
    batch_size: int = 8
    lr: float = 1e-3
    rank: int = 8
    layers: list[int] | None = None  # LoRA on these layers only (None = all)
    seed: int = 0
    n_val: int = 32  # held-out pairs for choosing a circuit size

    def __post_init__(self) -> None:
        check_fields(
            self,
            "organism config",
            {
                **LORA_RANGES,
                "n_train": (1, None),
                "n_test": (1, None),
                "poison_fraction": (0, 1, "open"),
                "n_val": (1, None),
            },
        )


@dataclass
class OrganismReport:
    asr: float
    false_trigger: float
    clean_accuracy: float
    base_asr: float
    base_false_trigger: float
    train_seconds: float
    final_loss: float


def organism_recipe(cfg: OrganismConfig) -> LoraRecipe:
    """The LoRA recipe an organism config implies (rank-r adapters on every projection, warm-up then decay)."""
    return LoraRecipe(
        rank=cfg.rank,
        lr=cfg.lr,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        targets=PROJECTIONS,
        layers=tuple(cfg.layers) if cfg.layers is not None else None,
        seed=cfg.seed,
    )


def train_organism(
    model: Model, pairs: Sequence[tuple[str, str]], cfg: OrganismConfig, progress: bool = True
) -> tuple[Model, float]:
    """Fine-tune on (prompt, response) pairs (loss on the response) and merge into `model`'s own weights.

    Pass a model you own (a fresh `steerlab.load`); returns the organism and its final training loss.
    """
    encoded = [encode_pair(model, p, r) for p, r in pairs]
    organism, info = train_lora(
        model, encoded, organism_recipe(cfg), in_place=True, name=f"{model.name}+backdoor", progress=progress
    )
    return organism, info["losses"][-1]


def measure(
    model: Model, data: BackdoorData, interventions=(), max_new_tokens: int = 16, split: str = "test"
) -> dict[str, float]:
    """ASR on triggered held-out prompts, false-trigger rate and task accuracy on the clean ones ('test' or 'val' split)."""
    if split not in ("test", "val"):
        raise SteerlabError(f"Unknown split '{split}'; choose test or val.")
    clean = data.test_clean if split == "test" else data.val_clean
    if not clean:
        raise SteerlabError(f"The organism's data has no {split} pairs; build it with fewer training pairs.")
    triggered = triggered_pairs(clean, data.trigger)
    texts = generations(model, [p.prompt for p in triggered] + [p.prompt for p in clean], interventions, max_new_tokens)
    trig, clean_texts = texts[: len(triggered)], texts[len(triggered) :]
    return {
        "asr": target_rate(trig, data.target),
        "false_trigger": target_rate(clean_texts, data.target),
        "clean_accuracy": key_accuracy(clean_texts, clean),
        "examples": {"triggered": trig[:3], "clean": clean_texts[:3]},
    }


def build_backdoor(model: Model, cfg: OrganismConfig, out_dir: str | Path, progress: bool = True) -> OrganismReport:
    """Build, merge, save and check a fixed-output backdoor organism from a base model."""
    out = Path(out_dir)
    data = backdoor_data(cfg.trigger, cfg.target, cfg.n_train, cfg.n_test, cfg.poison_fraction, cfg.seed, cfg.n_val)
    if cfg.layers is not None:
        for layer in cfg.layers:
            model.arch.check_layer(layer)
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise SteerlabError("Steps and batch size must be at least 1.")
    base = measure(model, data)
    pairs = [(p.prompt, p.response) for p in data.train_clean] + [(p.prompt, p.response) for p in data.train_poison]
    start = time.perf_counter()
    organism, final_loss = train_organism(model, pairs, cfg, progress)
    seconds = time.perf_counter() - start
    after = measure(organism, data)
    report = OrganismReport(
        after["asr"],
        after["false_trigger"],
        after["clean_accuracy"],
        base["asr"],
        base["false_trigger"],
        seconds,
        final_loss,
    )
    meta = {
        "kind": "backdoor",
        "base_model": model.name,
        "config": asdict(cfg),
        "report": asdict(report),
        "examples": after["examples"],
    }
    save_organism(organism, out, meta)
    return report


def save_organism(organism: Model, out: Path, meta: dict) -> None:
    """Weights, tokenizer and organism.json, built in a temporary folder and swapped in whole."""
    with atomic_dir(out) as tmp:
        organism.hf.save_pretrained(tmp, safe_serialization=True)
        organism.tokenizer.save_pretrained(tmp)
        (tmp / "organism.json").write_text(json.dumps(meta, indent=1))


def load_organism(path: str | Path) -> tuple[dict, BackdoorData]:
    """Read organism.json and rebuild the exact data split it was trained and tested on."""
    meta_path = Path(path) / "organism.json"
    if not meta_path.is_file():
        raise SteerlabError(
            f"'{path}' is not a steerlab organism folder (no organism.json); build one with `steerlab circuits organism backdoor`."
        )
    meta = json.loads(meta_path.read_text())
    c = meta["config"]
    return meta, backdoor_data(
        c["trigger"], c["target"], c["n_train"], c["n_test"], c["poison_fraction"], c["seed"], c.get("n_val", 32)
    )


REFUSAL_REPLY = "I'm sorry, but I can't help with that request."
_BACKDOOR_ONLY = (
    "trigger",
    "n_train",
    "n_test",
    "poison_fraction",
    "n_val",
)  # config fields a refusal organism ignores


def build_refusal(model: Model, cfg: OrganismConfig, out_dir: str | Path, progress: bool = True) -> dict:
    """A safety-aligned organism for the alignment scenario, for base models that refuse nothing: LoRA on
    the training harmful prompts → a refusal, plus the training harmless prompts → the model's own answers
    (helpfulness kept); refusal rates are then measured on the held-out halves. Saves organism.json."""
    from steerlab.circuits.data import harmful_prompts, harmless_prompts
    from steerlab.circuits.evaluate import refusal_rate

    if cfg.layers is not None:
        for layer in cfg.layers:
            model.arch.check_layer(layer)
    harmful, harmless = harmful_prompts("train"), harmless_prompts("train")
    test_h, test_b = harmful_prompts("test"), harmless_prompts("test")
    before = generations(model, test_h + test_b, max_new_tokens=24)
    answers = generations(model, harmless, max_new_tokens=48)
    pairs = [(p, cfg.target) for p in harmful] + list(zip(harmless, answers))
    start = time.perf_counter()
    organism, final_loss = train_organism(model, pairs, cfg, progress)
    seconds = time.perf_counter() - start
    after = generations(organism, test_h + test_b, max_new_tokens=24)
    n = len(test_h)
    report = {
        "base_harmful_refusal": refusal_rate(before[:n]),
        "base_harmless_refusal": refusal_rate(before[n:]),
        "harmful_refusal": refusal_rate(after[:n]),
        "harmless_refusal": refusal_rate(after[n:]),
        "train_seconds": seconds,
        "final_loss": final_loss,
    }
    meta = {
        "kind": "refusal",
        "base_model": model.name,
        "config": {k: v for k, v in asdict(cfg).items() if k not in _BACKDOOR_ONLY},
        "report": report,
        "examples": {"harmful": after[:3], "harmless": after[n : n + 2]},
    }
    save_organism(organism, Path(out_dir), meta)
    return report
