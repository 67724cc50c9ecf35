"""One LoRA trainer (peft) for every experiment that fine-tunes: organisms, self-correction, re-alignment.

Training runs for a fixed number of optimiser steps over seeded reshuffles of the data, then the
adapter is merged so the result is a plain `Model` that every steering and ablation path accepts.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ContextManager, Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.models.loading import Model, wrap
from steerlab.progress import progress_bar
from steerlab.schedule import warmup_decay
from steerlab.training.examples import Encoded, right_pad

PROJECTIONS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)  # attention + MLP (Llama-style names)


# check_fields ranges of the LoRA settings every experiment's config carries (circuits and persona organisms).
LORA_RANGES = {
    "steps": (1, None),
    "batch_size": (1, None),
    "lr": (0, None, "open-low"),
    "rank": (1, None),
    "layers": (0, None),
    "seed": (0, None),
}


@dataclass(frozen=True)
class LoraRecipe:
    """Adapter shape and optimiser settings (defaults sized for a CPU)."""

    rank: int = 8
    alpha: int | None = None  # None = 2 × rank
    dropout: float = 0.0
    lr: float = 1e-3
    steps: int = 60
    batch_size: int = 8
    warmup_steps: int = 5
    decay: bool = True  # linear decay to zero after warm-up; False keeps the rate constant
    clip_norm: float | None = 1.0
    targets: tuple[str, ...] | None = None  # module names; None = every nn.Linear except lm_head
    layers: tuple[int, ...] | None = None  # None = every layer
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1:
            raise SteerlabError("LoRA rank, steps and batch size must each be at least 1.")
        if not self.lr > 0:
            raise SteerlabError(f"The learning rate must be positive; got {self.lr:g}.")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]

    @staticmethod
    def steps_for(n_examples: int, epochs: int, batch_size: int) -> int:
        """Optimiser steps that cover the data `epochs` times."""
        return max(1, epochs * math.ceil(n_examples / batch_size))


def linear_targets(hf: torch.nn.Module) -> list[str]:
    """Leaf names of every linear projection except the output head."""
    return sorted(
        {n.split(".")[-1] for n, m in hf.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    )


def _schedule(recipe: LoraRecipe):
    decay_start = 0 if recipe.decay else None
    return lambda step: warmup_decay(
        step, steps=recipe.steps, warmup_steps=recipe.warmup_steps, decay_start=decay_start
    )


def train_lora(
    model: Model,
    examples: Sequence[Encoded],
    recipe: LoraRecipe,
    *,
    in_place: bool = False,
    name: str | None = None,
    progress: bool = True,
    prepare: Callable[[torch.nn.Module], None] | None = None,
    forward_context: Callable[[Model, list[int]], ContextManager] | None = None,
    adapter_dir: str | Path | None = None,
) -> tuple[Model, dict]:
    """Fine-tune a LoRA adapter on encoded examples, merge it and return the tuned model and the loss curve.

    With in_place=False the weights are copied first, so `model` is untouched. `prepare`, if given, is
    called with the peft model before the optimiser is built (e.g. to restrict adapters with gradient masks).
    `forward_context(training_model, example_indices)`, if given, is entered around each batch's forward
    (e.g. steering hooks that must stay on while training). `adapter_dir` saves the unmerged adapter.
    """
    from peft import LoraConfig, get_peft_model

    if not examples:
        raise SteerlabError("LoRA fine-tuning needs at least one training example.")
    if all(all(lab == -100 for lab in labels) for _, labels in examples):
        raise SteerlabError("No training example has a token under the loss.")
    torch.manual_seed(recipe.seed)
    hf = model.hf if in_place else copy.deepcopy(model.hf)
    targets = list(recipe.targets) if recipe.targets else linear_targets(hf)
    config = LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha or 2 * recipe.rank,
        lora_dropout=recipe.dropout,
        target_modules=targets,
        layers_to_transform=list(recipe.layers) if recipe.layers is not None else None,
    )
    peft_model = get_peft_model(hf, config)
    if prepare is not None:
        prepare(peft_model)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(recipe))
    pad = model.pad_id
    rng = random.Random(recipe.seed)
    order: list[int] = []
    losses: list[float] = []
    training_view = (
        wrap(hf, model.tokenizer, name=f"{model.name}+lora-training") if forward_context is not None else None
    )
    peft_model.train()  # after wrap(), which switches to eval mode
    with progress_bar(progress) as bar:
        task = bar.add_task("LoRA fine-tuning", total=recipe.steps, info="")
        for _ in range(recipe.steps):
            if len(order) < recipe.batch_size:
                fresh = list(range(len(examples)))
                rng.shuffle(fresh)
                order += fresh
            idx, order = order[: recipe.batch_size], order[recipe.batch_size :]
            input_ids, labels, mask = right_pad([examples[i] for i in idx], pad, model.device)
            ctx = forward_context(training_view, idx) if forward_context is not None else contextlib.nullcontext()
            with torch.enable_grad(), ctx:
                loss = peft_model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
            if recipe.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, recipe.clip_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            bar.update(task, advance=1, info=f"loss {losses[-1]:.3f}")
    if adapter_dir is not None:
        from steerlab.paths import atomic_dir

        with atomic_dir(adapter_dir) as tmp:
            peft_model.save_pretrained(str(tmp))
    merged = peft_model.merge_and_unload()
    merged.eval()
    for p in merged.parameters():
        p.requires_grad_(False)
    tuned = wrap(merged, model.tokenizer, name=name or f"{model.name}+lora-{recipe.digest()}")
    return tuned, {"losses": losses, "n_steps": len(losses), "targets": targets, "recipe": asdict(recipe)}
