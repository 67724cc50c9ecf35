"""The default SAE for each packaged model: a fixed training recipe, trained once and cached.

`default_sae("smollm2-135m-instruct")` returns the cached SAE, training it (a few CPU minutes) the
first time; `steerlab sae default` does the same from the command line (used by `make demo` and CI).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.paths import write_json
from steerlab.models.gguf_cache import cache_root
from steerlab.sae.core import Sae
from steerlab.sae.loading import load_sae
from steerlab.sae.train import TrainConfig

# SmolLM2-135M: 30 layers, d_model 576. resid_post of layer 17 = after 18 of 30 layers (60% depth),
# 8x width, TopK k=32; data reuse trades scarce CPU forwards for optimizer steps.
RECIPES: dict[str, TrainConfig] = {
    "smollm2-135m-instruct": TrainConfig(
        layer=17, site="resid_post", arch="topk", d_sae=4608, k=32, n_tokens=256 * 900, batch_size=256,
        lr=1e-3, warmup_steps=50, decay_fraction=0.3, buffer_tokens=32_768, reuse=5.0, context_len=128,
        checkpoint_every=100, seed=0,
    ),
}


def recipe(model_name: str) -> TrainConfig:
    """The default training recipe of a packaged model."""
    if model_name not in RECIPES:
        raise SteerlabError(f"No default SAE recipe for '{model_name}'; known: {', '.join(RECIPES)}. Train one with `steerlab sae train`.")
    return RECIPES[model_name]


def default_dir(model_name: str) -> Path:
    """Where the default SAE of a model is cached (keyed by the recipe, so a new recipe retrains)."""
    cfg = recipe(model_name)
    key = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return cache_root() / "saes" / model_name / f"L{cfg.layer}-{cfg.site}-{cfg.arch}{cfg.d_sae}-k{cfg.k}-{key}"


def default_sae(model_name: str = "smollm2-135m-instruct", *, train: bool = True, force: bool = False, progress: bool = True) -> Sae:
    """The cached default SAE of a packaged model; trains, evaluates and inspects it first when missing."""
    folder = default_dir(model_name)
    if (folder / "sae" / "cfg.json").is_file() and not force:
        return load_sae(folder / "sae")
    if not train:
        raise SteerlabError(f"The default SAE for '{model_name}' is not built yet; run `steerlab sae default {model_name}`.")
    return build_default(model_name, force=force, progress=progress)


def build_default(model_name: str, *, force: bool = False, progress: bool = True, eval_tokens: int = 16_384, ce_tokens: int = 4_096) -> Sae:
    """Train the default recipe on the offline corpus, then write eval.json and an inspect page beside it."""
    import steerlab
    from steerlab.data import default_corpus
    from steerlab.sae.evaluate import evaluate_sae
    from steerlab.sae.inspect import inspect_sae
    from steerlab.sae.train import train_sae

    cfg = recipe(model_name)
    folder = default_dir(model_name)
    model = steerlab.load(model_name)
    corpus = default_corpus()
    result = train_sae(model, corpus, cfg, folder, resume=not force, progress=progress)
    _, held_out = corpus.split(cfg.held_out)
    ev = evaluate_sae(model, result.sae, held_out.documents, n_tokens=eval_tokens, ce_tokens=ce_tokens)
    write_json(folder / "eval.json", ev.to_dict())
    inspect_sae(model, result.sae, held_out.documents, folder / "inspect", n_tokens=20_000)
    return load_sae(folder / "sae")
