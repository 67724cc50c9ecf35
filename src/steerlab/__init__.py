"""steerlab: steer, measure, locate and repair safety mechanisms inside Hugging Face language models."""

from steerlab.engine import Generation, generate, score, trace
from steerlab.errors import SteerlabError
from steerlab.interventions import (
    AblateLatents,
    AddVector,
    ClampLatents,
    MaskUnits,
    Record,
    Span,
    SteerLatent,
    apply,
)
from steerlab.models import Model, load, wrap
from steerlab.sae import Sae, SaeConfig, load_sae

__version__ = "0.1.0"

# Subpackages a user reaches as attributes (`steerlab.vectors.train_vector`, `steerlab.esr.run_esr`), imported on
# first use so `import steerlab` stays light.
_SUBPACKAGES = frozenset(
    {
        "circuits",
        "data",
        "distributed",
        "engine",
        "esr",
        "interventions",
        "judges",
        "models",
        "persona",
        "report",
        "sae",
        "serve",
        "store",
        "training",
        "vectors",
    }
)

# One entry point per experiment (`steerlab.run_esr(cfg, run_dir)`), also imported on first use: name -> module.
_ENTRY_POINTS = {
    "run_esr": "steerlab.esr.runner",
    "find_circuit": "steerlab.circuits.find",
    "diff_models": "steerlab.persona.diff",
    "run_study": "steerlab.persona.study",
}


def __getattr__(name: str):
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f"steerlab.{name}")
    if name in _ENTRY_POINTS:
        return getattr(importlib.import_module(_ENTRY_POINTS[name]), name)
    raise AttributeError(f"module 'steerlab' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBPACKAGES | set(_ENTRY_POINTS))


__all__ = [
    "AblateLatents",
    "AddVector",
    "ClampLatents",
    "Generation",
    "MaskUnits",
    "Model",
    "Record",
    "Sae",
    "SaeConfig",
    "Span",
    "SteerLatent",
    "SteerlabError",
    "apply",
    "generate",
    "load",
    "load_sae",
    "score",
    "trace",
    "wrap",
]
