"""Self-correction fine-tuning (experiment 4): synthetic drift-notice-restart examples, LoRA with peft.

Offline data: each training prompt's own unsteered answer is the on-topic answer; a self-correction
example starts with another prompt's answer (a seeded derangement — plausible text on the wrong
topic), then an explicit acknowledgement ("Wait, that's not right..."), then the on-topic answer.
The loss skips the prompt and the off-topic span, so the model learns to notice and recover, never
to drift. Normal examples train on the whole answer. `ratio` is the share of self-correction
examples in the mix. Training prompts are disjoint from the evaluation and discovery prompts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.models.loading import Model

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
            examples.append(Example(p, ((drift + "\n\n", False), (ack + "\n\n" + answers[p].strip(), True)), "self_correction"))
        else:
            examples.append(Example(p, ((answers[p].strip(), True),), "normal"))
    rng.shuffle(examples)
    return examples


def tokenize(model: Model, ex: Example) -> tuple[list[int], list[int]]:
    """input ids and labels (-100 on the prompt and on untrained segments; EOS closes the answer, trained)."""
    ids = model.encode(ex.prompt)
    labels = [-100] * len(ids)
    for text, trained in ex.segments:
        seg = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += seg
        labels += seg if trained else [-100] * len(seg)
    eos = model.tokenizer.eos_token_id
    if eos is not None:
        ids.append(eos)
        labels.append(eos)
    return ids, labels


def train_lora(model: Model, examples: Sequence[Example], cfg: FinetuneConfig, progress: bool = False) -> tuple[Model, dict]:
    """LoRA on a copy of the model (all linear projections), merged back; the base model is untouched."""
    from peft import LoraConfig, get_peft_model

    import steerlab
    from steerlab.progress import progress_bar

    torch.manual_seed(cfg.seed)
    hf = copy.deepcopy(model.hf)
    targets = sorted({n.split(".")[-1] for n, m in hf.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n})
    peft_model = get_peft_model(hf, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets))
    peft_model.train()
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    data = [tokenize(model, ex) for ex in examples]
    pad = model.tokenizer.pad_token_id or 0
    losses = []
    steps = cfg.epochs * ((len(data) + cfg.batch_size - 1) // cfg.batch_size)
    rng = random.Random(cfg.seed)
    with progress_bar(progress) as bar:
        task = bar.add_task("LoRA fine-tuning", total=steps, info="")
        for _ in range(cfg.epochs):
            order = list(range(len(data)))
            rng.shuffle(order)
            for start in range(0, len(order), cfg.batch_size):
                batch = [data[i] for i in order[start : start + cfg.batch_size]]
                width = max(len(ids) for ids, _ in batch)
                input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch])
                labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
                mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
                loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                opt.step()
                opt.zero_grad()
                losses.append(float(loss.detach()))
                bar.update(task, advance=1, info=f"loss {losses[-1]:.3f}")
    merged = peft_model.merge_and_unload()
    merged.eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    tuned = steerlab.wrap(merged, model.tokenizer, name=f"{model.name}+selfcorrect-lora-{cfg.digest()}")
    return tuned, {"losses": losses, "n_steps": len(losses), "targets": targets,
                   "n_self_correction": sum(e.kind == "self_correction" for e in examples), "n_normal": sum(e.kind == "normal" for e in examples)}


def run_finetune(cfg, ft: FinetuneConfig, run_dir, res, *, progress: bool = True) -> dict:
    """Build the data, LoRA-tune a copy of the model, and run the same ESR evaluation on base and tuned models.

    Thresholds are recalibrated on the tuned model (its fingerprint differs); latents and prompts are shared.
    """
    from pathlib import Path

    import steerlab
    from steerlab.esr.prompts import TRAIN_PROMPTS
    from steerlab.esr.runner import _save, run_esr
    from steerlab.esr.setup import Resources
    from steerlab.esr.trials import stable_int

    run_dir = Path(run_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)
    base = run_esr(cfg, run_dir / "base", res=res, progress=progress, report=False)
    latents = tuple(int(k) for k in base.summary["thresholds"])
    seeds = [stable_int(ft.seed, "finetune-answer", i) for i in range(len(TRAIN_PROMPTS))]
    gens = steerlab.generate(res.model, list(TRAIN_PROMPTS), None, max_new_tokens=ft.answer_tokens, temperature=cfg.temperature,
                             repetition_penalty=cfg.repetition_penalty, seed=seeds, batch_size=cfg.batch_size, progress=progress)
    examples = build_examples({g.prompt: g.text for g in gens}, ft)
    (run_dir / "finetune_data.jsonl").write_text("".join(
        json.dumps({"prompt": e.prompt, "kind": e.kind, "segments": [{"text": t, "trained": tr} for t, tr in e.segments]}) + "\n"
        for e in examples))
    tuned_model, train_info = train_lora(res.model, examples, ft, progress=progress)
    tuned_res = Resources(tuned_model, res.sae, res.labels, res.frequencies, res.judge, res.prompts, res.discovery)
    tuned = run_esr(cfg.replace(latents=latents), run_dir / "tuned", res=tuned_res, progress=progress, report=False)
    keys = ("multi_attempt_rate", "esr_rate", "improvement_rate", "first_score", "mean_attempts")
    out = {"config": asdict(ft), "train": {k: v for k, v in train_info.items() if k != "losses"},
           "loss_first": train_info["losses"][0], "loss_last": train_info["losses"][-1],
           "base": {c: {k: m[k] for k in keys} for c, m in base.summary["metrics"].items()},
           "tuned": {c: {k: m[k] for k in keys} for c, m in tuned.summary["metrics"].items()},
           "tuned_thresholds": {k: v["threshold"] for k, v in tuned.summary["thresholds"].items()}}
    _save(run_dir, "finetune.json", out)
    return out
