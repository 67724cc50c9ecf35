"""An ESR model organism: a SmolLM2 LoRA that notices its steered drift, says so, and answers (a known positive).

Data (on-policy, offline): for each fine-tuning prompt (disjoint from the evaluation and discovery
prompts) the model's own unsteered answer is the on-topic part; the off-topic part is the model's own
*steered* drift, generated with the latents and strengths the ESR suite itself calibrated. Degenerate
drift (loops, number runs, non-words) is dropped. A self-correction example is
`drift (not trained) + acknowledgement + on-topic answer (trained)`, trained with the same steering
active in the forward pass, so the organism learns to recover *under* steering; the loss never covers
the drift. Normal examples (unsteered prompt -> answer) keep the organism quiet when nothing drifts.

The acknowledgements are natural phrasings that the heuristic judge's restart patterns do not match
(a test holds this), so the organism also tests the judge. The result is an adapter folder that
`steerlab.load` reads (base model + merged LoRA), with its data, recipe and fingerprint recorded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch

from steerlab.errors import SteerlabError
from steerlab.models.loading import ADAPTER_RECORD, Model, adapter_base
from steerlab.paths import write_text
from steerlab.sae.core import Sae

ACKNOWLEDGEMENTS = (
    "Hmm, this has drifted away from what you asked.",
    "I notice I have wandered off the subject of your question.",
    "That paragraph had nothing to do with your question, so here is a proper answer.",
    "I seem to have lost the thread there; your question deserves a direct answer.",
    "None of that answers your question. Here is what you actually need.",
    "I have strayed from the topic you asked about.",
)
RECORD = "organism.json"


@dataclass(frozen=True)
class OrganismConfig:
    """The organism's data mix and LoRA recipe (sized for a CPU)."""

    drift_per_prompt: int = 2  # self-correction examples per training prompt (each with its own latent)
    normal_per_prompt: int = 1
    extra_prompts: int = 72  # packaged instructions added to the fine-tuning prompts (none is an ESR eval prompt)
    drift_tokens: int = 32  # short enough that the recovery fits the trials' 64-token budget
    answer_tokens: int = 64
    temperature: float = 0.6  # sampling of the drift (as ESR trials)
    rank: int = 16
    alpha: int = 32
    lr: float = 2e-3
    epochs: int = 2
    batch_size: int = 4
    max_degenerate_tries: int = 2  # resample a degenerate drift this many times before dropping the example
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("drift_per_prompt", "drift_tokens", "answer_tokens", "rank", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SteerlabError(f"{name} must be at least 1; got {getattr(self, name)}.")
        for name in ("normal_per_prompt", "extra_prompts"):
            if getattr(self, name) < 0:
                raise SteerlabError(f"{name} must not be negative; got {getattr(self, name)}.")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class OrganismExample:
    """A prompt, answer segments (trained or not) and the steering (latent, strength) active while training it."""

    prompt: str
    segments: tuple[tuple[str, bool], ...]
    latent: int | None
    strength: float
    kind: str

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "kind": self.kind,
            "latent": self.latent,
            "strength": self.strength,
            "segments": [{"text": t, "trained": tr} for t, tr in self.segments],
        }


def organism_prompts(cfg: OrganismConfig) -> list[str]:
    """The fine-tuning prompts: ESR's TRAIN_PROMPTS plus `extra_prompts` packaged instructions (all disjoint from the eval set)."""
    from steerlab.data.instructions import train_instructions
    from steerlab.esr.prompts import TRAIN_PROMPTS

    return list(TRAIN_PROMPTS) + train_instructions()[: cfg.extra_prompts]


def check_strengths(strengths: dict[int, float], sae: Sae) -> dict[int, float]:
    """Latents in range with finite, positive strengths; anything else is a one-sentence error."""
    if not strengths:
        raise SteerlabError("The organism needs at least one (latent, strength) to drift with.")
    out = {}
    for lat, s in strengths.items():
        sae.check_latent(int(lat))
        if not torch.isfinite(torch.tensor(float(s))) or float(s) <= 0:
            raise SteerlabError(f"The strength of latent {lat} must be a finite positive number; got {s}.")
        out[int(lat)] = float(s)
    return out


def _cut_at_sentence(text: str) -> str:
    """The drift up to its last full sentence (all of it when it has none)."""
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", text)]
    return text[: ends[-1]].strip() if ends and ends[-1] > 40 else text.strip()


def build_examples(
    model: Model,
    sae: Sae,
    strengths: dict[int, float],
    prompts: Sequence[str],
    cfg: OrganismConfig,
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> tuple[list[OrganismExample], dict]:
    """On-policy examples: the model's own answers and its own steered drift (degenerate drift resampled or dropped)."""
    from steerlab.engine.generate import generate
    from steerlab.esr.fluency import degeneration
    from steerlab.interventions.specs import SteerLatent

    rng = random.Random(cfg.seed)
    latents = sorted(strengths)
    answers = generate(
        model,
        list(prompts),
        max_new_tokens=cfg.answer_tokens,
        temperature=0.0,
        batch_size=batch_size,
        progress=progress,
    )
    on_topic = {p: _cut_at_sentence(g.text) for p, g in zip(prompts, answers)}
    plan = [
        (p, latents[(i * cfg.drift_per_prompt + j) % len(latents)])
        for i, p in enumerate(prompts)
        for j in range(cfg.drift_per_prompt)
    ]
    drifts: dict[int, str] = {}
    dropped: dict[str, int] = {}
    todo = list(range(len(plan)))
    for attempt in range(cfg.max_degenerate_tries + 1):
        if not todo:
            break
        rows = [plan[i] for i in todo]
        iv = SteerLatent(
            sae,
            latent=torch.tensor([lat for _, lat in rows]),
            strength=torch.tensor([strengths[lat] for _, lat in rows]),
        )
        gens = generate(
            model,
            [p for p, _ in rows],
            [iv],
            max_new_tokens=cfg.drift_tokens,
            temperature=cfg.temperature,
            seed=[cfg.seed * 100_003 + attempt * 10_007 + i for i in todo],
            batch_size=batch_size,
            progress=progress,
        )
        again = []
        for i, g in zip(todo, gens):
            kind = degeneration(g.text)
            if kind is None and g.text.strip():
                drifts[i] = _cut_at_sentence(g.text)
            else:
                again.append(i)
                if attempt == cfg.max_degenerate_tries:
                    dropped[kind or "empty"] = dropped.get(kind or "empty", 0) + 1
        todo = again
    examples: list[OrganismExample] = []
    for i, (p, lat) in enumerate(plan):
        if i in drifts and on_topic[p]:
            ack = rng.choice(ACKNOWLEDGEMENTS)
            examples.append(
                OrganismExample(
                    p,
                    ((drifts[i] + "\n\n", False), (ack + " " + on_topic[p], True)),
                    lat,
                    strengths[lat],
                    "self_correction",
                )
            )
    for p in prompts:
        for _ in range(cfg.normal_per_prompt):
            if on_topic[p]:
                examples.append(OrganismExample(p, ((on_topic[p], True),), None, 0.0, "normal"))
    rng.shuffle(examples)
    if not any(e.kind == "self_correction" for e in examples):
        raise SteerlabError(
            "Every steered drift was degenerate, so the organism has no self-correction example; "
            "use latents that stay fluent at their strengths."
        )
    return examples, {"dropped_degenerate_drift": dropped, "drifts": len(drifts), "planned": len(plan)}


def steering_context(sae: Sae, examples: Sequence[OrganismExample]):
    """forward_context for the trainer: each row of a batch steered with its own example's latent and strength."""
    from steerlab.interventions.hooks import apply
    from steerlab.interventions.specs import SteerLatent

    def context(view: Model, idx: list[int]):
        rows = [examples[i] for i in idx]
        if all(r.latent is None for r in rows):
            return contextlib.nullcontext()
        iv = SteerLatent(
            sae,
            latent=torch.tensor([r.latent if r.latent is not None else 0 for r in rows]),
            strength=torch.tensor([r.strength for r in rows], dtype=torch.float32),
        )
        return apply(view, [iv])

    return context


def build_organism(
    model: Model,
    sae: Sae,
    strengths: dict[int, float],
    out: str | Path,
    *,
    base_name: str,
    cfg: OrganismConfig = OrganismConfig(),
    prompts: Sequence[str] | None = None,
    progress: bool = True,
    batch_size: int = 16,
    rebuild: str | None = None,
) -> tuple[Model, dict]:
    """Build, train and save the organism in `out` (adapter/, data.jsonl, organism.json).

    Args:
        model: the base model (left unchanged; the organism is a LoRA on a copy).
        sae: the SAE whose latents steer the drift.
        strengths: {latent: strength} the ESR suite calibrated on the base model.
        out: the organism folder.
        base_name: the base model's name, recorded so `steerlab.load(out)` finds it.
        cfg: the data mix and LoRA recipe.
        prompts: fine-tuning prompts (default `organism_prompts(cfg)`).
        rebuild: the command recorded as the way to rebuild it (default the `esr organism` command).

    Returns:
        (the tuned model, the record written to organism.json).
    """
    from steerlab.training import LoraRecipe, encode_example
    from steerlab.training.lora import train_lora

    out = Path(out).expanduser()
    existing = adapter_base(out) if out.is_dir() else None
    if existing is not None and existing != base_name:
        raise SteerlabError(f"{out} holds an organism of '{existing}', not '{base_name}'; choose another --out folder.")
    strengths = check_strengths(strengths, sae)
    prompts = list(prompts or organism_prompts(cfg))
    examples, data_info = build_examples(model, sae, strengths, prompts, cfg, batch_size=batch_size, progress=progress)
    encoded = [encode_example(model, e.prompt, e.segments) for e in examples]
    recipe = LoraRecipe(
        rank=cfg.rank,
        alpha=cfg.alpha,
        dropout=0.0,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        steps=LoraRecipe.steps_for(len(encoded), cfg.epochs, cfg.batch_size),
        warmup_steps=2,
        decay=True,
        clip_norm=1.0,
        seed=cfg.seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    tmp_adapter = out / ".adapter.tmp"
    tuned, info = train_lora(
        model,
        encoded,
        recipe,
        name=str(out),
        progress=progress,
        forward_context=steering_context(sae, examples),
        adapter_dir=tmp_adapter,
    )
    adapter = out / "adapter"
    if adapter.exists():
        import shutil

        shutil.rmtree(adapter)
    tmp_adapter.replace(adapter)
    data = "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in examples)
    write_text(out / "data.jsonl", data)
    weights = (adapter / "adapter_model.safetensors").read_bytes()
    record = {
        "base_model": base_name,
        "base_fingerprint": model.fingerprint(),
        "adapter": "adapter",
        "adapter_sha256": hashlib.sha256(weights).hexdigest(),
        "config": asdict(cfg),
        "lora": asdict(recipe),
        "sae": {"source": sae.source, "layer": sae.layer, "d_sae": sae.d_sae},
        "strengths": {str(k): v for k, v in strengths.items()},
        "prompts": prompts,
        "data_sha256": hashlib.sha256(data.encode()).hexdigest(),
        "data": data_info,
        "n_self_correction": sum(e.kind == "self_correction" for e in examples),
        "n_normal": sum(e.kind == "normal" for e in examples),
        "loss_first": info["losses"][0],
        "loss_last": info["losses"][-1],
        "losses": info["losses"],
        "acknowledgements": list(ACKNOWLEDGEMENTS),
        "rebuild": rebuild or f"steerlab esr organism {out} --model {base_name}",
    }
    write_text(out / RECORD, json.dumps(record, indent=1))
    write_text(out / ADAPTER_RECORD, json.dumps({"base_model": base_name, "adapter": "adapter"}))
    tuned.revision = f"adapter:{record['adapter_sha256'][:16]}+{model.revision}"
    return tuned, record


SHIPPED_FILES = ("adapter", "data.jsonl", RECORD, ADAPTER_RECORD)


def ship_organism(folder: str | Path, dest: str | Path) -> Path:
    """Copy an organism's adapter, data and records (not the ESR run that may share its folder) to `dest`.

    Args:
        folder: an organism folder built by `build_organism`.
        dest: where it goes (the demo reads `steerlab/esr/shipped/organism-<model>`).

    Returns:
        dest.
    """
    import shutil

    folder, dest = Path(folder).expanduser(), Path(dest).expanduser()
    if adapter_base(folder) is None:
        raise SteerlabError(f"{folder} holds no organism (no {ADAPTER_RECORD}).")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SHIPPED_FILES:
        src = folder / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)
    # the adapter's config names the base by this machine's cache path; the shipped copy names it by alias
    config = tmp / "adapter" / "adapter_config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        data["base_model_name_or_path"] = adapter_base(folder)
        write_text(config, json.dumps(data, indent=2))
    (tmp / "adapter" / "README.md").unlink(missing_ok=True)  # peft's model-card template
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def load_organism(folder: str | Path, base_name: str | None = None) -> Model:
    """The organism in `folder` (its base with the adapter merged); base_name, if given, must be its base."""
    from steerlab.models.loading import load_adapter_folder

    folder = Path(folder).expanduser()
    if adapter_base(folder) is None:
        raise SteerlabError(
            f"{folder} holds no organism (no {ADAPTER_RECORD}); build one with `steerlab esr organism`."
        )
    return load_adapter_folder(folder, expect_base=base_name)


def organism_for_run(
    cfg,
    res,
    out: str | Path,
    *,
    organism_cfg: OrganismConfig = OrganismConfig(),
    calib_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[Model, dict]:
    """The organism for an ESR config: select and calibrate latents on the base model (cached), then build with those strengths.

    Args:
        cfg: the EsrConfig whose latents and calibrated strengths (on the base model) the drift uses.
        res: its loaded resources (base model, SAE, judge, prompts).
        out: the organism folder.
        calib_dir: where the base calibration is saved (default: out/base-calibration).
    """
    from steerlab.esr.runner import fluent_latents, resolve_latents, resolve_thresholds

    calib_dir = Path(calib_dir) if calib_dir is not None else Path(out).expanduser() / "base-calibration"
    calib_dir.mkdir(parents=True, exist_ok=True)
    latents = resolve_latents(res, cfg, calib_dir)
    thresholds = resolve_thresholds(res, cfg, latents, calib_dir, progress=progress)
    latents = fluent_latents(latents, thresholds, cfg, calib_dir)
    strengths = {lat: thresholds[lat].threshold for lat in latents}
    return build_organism(
        res.model,
        res.sae,
        strengths,
        out,
        base_name=cfg.model,
        cfg=organism_cfg,
        progress=progress,
        batch_size=cfg.batch_size,
    )
