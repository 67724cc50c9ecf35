"""Load what an ESR run needs once: model, SAE, labels, activation frequencies, judge and prompts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steerlab.errors import SteerlabError
from steerlab.esr.config import EsrConfig
from steerlab.esr.prompts import DISCOVERY_PROMPTS, EVAL_PROMPTS, load_prompts
from steerlab.judges.base import Judge
from steerlab.models.loading import Model
from steerlab.sae import Sae


@dataclass
class Resources:
    """The loaded pieces of a run (not serialised; the config says how to rebuild them)."""

    model: Model
    sae: Sae
    labels: dict[int, str]
    frequencies: list[float] | None
    judge: Judge
    prompts: list[str]
    discovery: list[str]
    concepts: Any = None  # a sae.concepts.ConceptScorer over the SAE's top contexts, when the SAE ships them

    def label(self, latent: int) -> str:
        return self.labels.get(int(latent), f"latent {latent}")


def sae_model_name(cfg: EsrConfig) -> str:
    """The model whose default SAE a run uses: the base model of an adapter (organism) folder, else the model itself."""
    from steerlab.models.loading import adapter_base

    return (adapter_base(cfg.model) if Path(cfg.model).expanduser().is_dir() else None) or cfg.model


def inspect_folder(cfg: EsrConfig) -> Path | None:
    """The inspect/ folder that belongs to the run's SAE: the default SAE's, or the one beside a local SAE folder."""
    if cfg.sae == "default":
        from steerlab.sae.default import default_dir

        return default_dir(sae_model_name(cfg)) / "inspect"
    local = Path(cfg.sae).expanduser()
    return local.parent / "inspect" if local.is_dir() and (local.parent / "inspect").is_dir() else None


def load_sae_for(cfg: EsrConfig, model: Model, progress: bool = True) -> tuple[Sae, dict[int, str], list[float] | None]:
    """The SAE with its labels and per-latent firing frequencies (when known)."""
    from steerlab.sae import load_sae
    from steerlab.sae.inspect import import_labels

    freqs = None
    labels: dict[int, str] = {}
    if cfg.sae == "default":
        from steerlab.engine.generate import generate
        from steerlab.sae.default import default_sae

        sae = default_sae(sae_model_name(cfg), progress=progress, generate_fn=generate)
    else:
        sae = load_sae(cfg.sae)
    inspect = inspect_folder(cfg)
    if inspect is not None:
        if (inspect / "labels.csv").is_file():
            labels = import_labels(inspect / "labels.csv")
        if (inspect / "frequencies.json").is_file():
            freqs = json.loads((inspect / "frequencies.json").read_text())["freq"]
    if cfg.labels:
        labels = import_labels(cfg.labels)
    sae.check_fits(model)
    return sae, labels, freqs


def load_concepts(cfg: EsrConfig):
    """Concept evidence for selection: a lazy scorer over inspect/contexts.json beside the SAE (None when it has none)."""
    inspect = inspect_folder(cfg)
    if inspect is None or not (inspect / "contexts.json").is_file():
        return None
    from steerlab.judges.embedder import packaged_embedder
    from steerlab.sae.concepts import ConceptScorer

    contexts = json.loads((inspect / "contexts.json").read_text(encoding="utf-8"))["contexts"]
    return ConceptScorer({int(k): v for k, v in contexts.items()}, packaged_embedder().embed, seed=cfg.seed)


def make_judge_for(cfg: EsrConfig) -> Judge:
    """The configured judge (its check runs before any generation)."""
    from steerlab.judges import make_judge

    judge = make_judge(
        cfg.judge,
        cfg.judge_model,
        cfg.judge_base_url,
        rubric=cfg.rubric,
        anchors=cfg.judge_anchors or None,
        temperature=cfg.judge_temperature,
    )
    judge.check()
    return judge


def load_resources(
    cfg: EsrConfig,
    *,
    model: Model | None = None,
    sae: Sae | None = None,
    judge: Judge | None = None,
    progress: bool = True,
) -> Resources:
    """Everything a run needs; pass model/sae/judge to reuse loaded ones (tests, the demo)."""
    from steerlab.models.loading import load

    prompts = load_prompts(cfg.prompts_file, EVAL_PROMPTS)
    discovery = load_prompts(cfg.discovery_file, DISCOVERY_PROMPTS)
    if cfg.prompts_per_latent > len(prompts):
        raise SteerlabError(
            f"prompts_per_latent ({cfg.prompts_per_latent}) exceeds the {len(prompts)} prompts available."
        )
    model = model or load(cfg.model, dtype=cfg.dtype, device=cfg.device)
    labels: dict[int, str] = {}
    freqs = None
    sae_given = sae
    if sae is None:
        sae, labels, freqs = load_sae_for(cfg, model, progress)
    elif cfg.labels:
        from steerlab.sae.inspect import import_labels

        labels = import_labels(cfg.labels)
    sae = sae.to(model.device)  # hooks run the SAE where the activations are
    for latent in cfg.latents:
        if not 0 <= latent < sae.d_sae:
            raise SteerlabError(f"Latent {latent} is out of range: this SAE has latents 0 to {sae.d_sae - 1}.")
    bad = [d for d in cfg.detectors if not 0 <= d < sae.d_sae]
    if bad:
        raise SteerlabError(f"Detector id {bad[0]} is out of range: this SAE has latents 0 to {sae.d_sae - 1}.")
    if cfg.steer_layer is not None and not 0 <= cfg.steer_layer < model.arch.n_layers:
        raise SteerlabError(
            f"Steering layer {cfg.steer_layer} is out of range: the model has layers 0 to {model.arch.n_layers - 1}."
        )
    judge = judge or make_judge_for(cfg)
    return Resources(
        model, sae, labels, freqs, judge, prompts, discovery, load_concepts(cfg) if sae_given is None else None
    )


def run_path(run_dir: str | Path) -> Path:
    return Path(run_dir).expanduser()
