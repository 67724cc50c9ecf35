"""Self-correction fine-tuning (experiment 4): synthetic drift-notice-restart examples, LoRA with peft.

Offline data: each training prompt's own unsteered answer is the on-topic answer; a self-correction
example starts with another prompt's answer (a seeded derangement — plausible text on the wrong
topic), then an explicit acknowledgement ("Wait, that's not right..."), then the on-topic answer.
The loss skips the prompt and the off-topic span, so the model learns to notice and recover, never
to drift. Normal examples train on the whole answer. `ratio` is the share of self-correction
examples in the mix. Training prompts are disjoint from the evaluation and discovery prompts.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from typing import Sequence

from steerlab.errors import SteerlabError
from steerlab.models.loading import Model
from steerlab.paths import write_text
from steerlab.training import LoraRecipe, encode_example
from steerlab.training.lora import train_lora as train_adapter

ACKNOWLEDGEMENTS = (
    "Wait, that's not right. Let me get back to the question.",
    "Hmm, I'm getting off track here. Let me start over.",
    "Actually, I made a mistake: that was off topic. Let me try again.",
    "Wait, that's not what you asked. Let me refocus.",
)


@dataclass(frozen=True)
class FinetuneConfig:
    """The data mix and the LoRA recipe (defaults sized for a CPU)."""

    ratio: float = 0.5
    n_examples: int = 48
    answer_tokens: int = 64
    offtopic_chars: int = 220
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    lr: float = 2e-4
    epochs: int = 2
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise SteerlabError(f"The fine-tuning mix ratio must lie in [0, 1]; got {self.ratio:g}.")
        if self.n_examples < 1 or self.epochs < 1 or self.batch_size < 1 or self.rank < 1:
            raise SteerlabError("n_examples, epochs, batch_size and rank must each be at least 1.")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Example:
    """A chat prompt and answer segments; `trained` marks the segments the loss covers."""

    prompt: str
    segments: tuple[tuple[str, bool], ...]
    kind: str


def _first_sentences(text: str, limit: int) -> str:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    out = ""
    for p in parts:
        if out and len(out) + len(p) > limit:
            break
        out = f"{out} {p}".strip()
    return out[:limit]


def build_examples(answers: dict[str, str], cfg: FinetuneConfig) -> list[Example]:
    """The mix: round(n × ratio) self-correction examples, the rest normal, shuffled with the seed."""
    prompts = [p for p, a in answers.items() if a.strip()]
    if len(prompts) < 2:
        raise SteerlabError("Fine-tuning data needs answers to at least two training prompts.")
    rng = random.Random(cfg.seed)
    n_sc = round(cfg.n_examples * cfg.ratio)
    examples: list[Example] = []
    for i in range(cfg.n_examples):
        p = prompts[i % len(prompts)]
        if i < n_sc:
            other = rng.choice([q for q in prompts if q != p])
            drift = _first_sentences(answers[other], cfg.offtopic_chars)
            ack = rng.choice(ACKNOWLEDGEMENTS)
            examples.append(
                Example(p, ((drift + "\n\n", False), (ack + "\n\n" + answers[p].strip(), True)), "self_correction")
            )
        else:
            examples.append(Example(p, ((answers[p].strip(), True),), "normal"))
    rng.shuffle(examples)
    return examples


def tokenize(model: Model, ex: Example) -> tuple[list[int], list[int]]:
    """Input ids and labels (-100 on the prompt and on the off-topic span; the closing token is trained)."""
    return encode_example(model, ex.prompt, ex.segments)


def lora_recipe(cfg: FinetuneConfig, n_examples: int) -> LoraRecipe:
    """The shared trainer's recipe for `epochs` passes at a constant learning rate."""
    return LoraRecipe(
        rank=cfg.rank,
        alpha=cfg.alpha,
        dropout=cfg.dropout,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        steps=LoraRecipe.steps_for(n_examples, cfg.epochs, cfg.batch_size),
        warmup_steps=1,
        decay=False,
        clip_norm=None,
        seed=cfg.seed,
    )


def train_lora(
    model: Model, examples: Sequence[Example], cfg: FinetuneConfig, progress: bool = False
) -> tuple[Model, dict]:
    """LoRA on a copy of the model (all linear projections), merged back; the base model is untouched."""
    encoded = [tokenize(model, ex) for ex in examples]
    tuned, info = train_adapter(
        model,
        encoded,
        lora_recipe(cfg, len(encoded)),
        name=f"{model.name}+selfcorrect-lora-{cfg.digest()}",
        progress=progress,
    )
    info["n_self_correction"] = sum(e.kind == "self_correction" for e in examples)
    info["n_normal"] = sum(e.kind == "normal" for e in examples)
    return tuned, info


def run_finetune(cfg, ft: FinetuneConfig, run_dir, res, *, progress: bool = True) -> dict:
    """Build the data, LoRA-tune a copy of the model, and run the same ESR evaluation on base and tuned models.

    Thresholds are recalibrated on the tuned model (its fingerprint differs); latents and prompts are shared.
    """
    from pathlib import Path

    from steerlab.engine.generate import generate
    from steerlab.esr.prompts import TRAIN_PROMPTS
    from steerlab.esr.runner import _save, run_esr
    from steerlab.esr.setup import Resources
    from steerlab.esr.trials import stable_int

    run_dir = Path(run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    base = run_esr(cfg, run_dir / "base", res=res, progress=progress, report=False)
    latents = tuple(int(k) for k in base.summary["thresholds"])
    seeds = [stable_int(ft.seed, "finetune-answer", i) for i in range(len(TRAIN_PROMPTS))]
    gens = generate(
        res.model,
        list(TRAIN_PROMPTS),
        None,
        max_new_tokens=ft.answer_tokens,
        temperature=cfg.temperature,
        repetition_penalty=cfg.repetition_penalty,
        seed=seeds,
        batch_size=cfg.batch_size,
        progress=progress,
    )
    examples = build_examples({g.prompt: g.text for g in gens}, ft)
    write_text(
        run_dir / "finetune_data.jsonl",
        "".join(
            json.dumps(
                {"prompt": e.prompt, "kind": e.kind, "segments": [{"text": t, "trained": tr} for t, tr in e.segments]}
            )
            + "\n"
            for e in examples
        ),
    )
    tuned_model, train_info = train_lora(res.model, examples, ft, progress=progress)
    tuned_res = Resources(tuned_model, res.sae, res.labels, res.frequencies, res.judge, res.prompts, res.discovery)
    tuned = run_esr(cfg.replace(latents=latents), run_dir / "tuned", res=tuned_res, progress=progress, report=False)
    keys = ("multi_attempt_rate", "esr_rate", "improvement_rate", "first_score", "mean_attempts")
    out = {
        "config": asdict(ft),
        "train": {k: v for k, v in train_info.items() if k != "losses"},
        "loss_first": train_info["losses"][0],
        "loss_last": train_info["losses"][-1],
        "base": {c: {k: m[k] for k in keys} for c, m in base.summary["metrics"].items()},
        "tuned": {c: {k: m[k] for k in keys} for c, m in tuned.summary["metrics"].items()},
        "tuned_thresholds": {k: v["threshold"] for k, v in tuned.summary["thresholds"].items()},
    }
    _save(run_dir, "finetune.json", out)
    return out
