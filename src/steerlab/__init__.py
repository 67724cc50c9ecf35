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
from steerlab.sae import Sae, SaeConfig

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


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"steerlab.{name}")
    raise AttributeError(f"module 'steerlab' has no attribute '{name}'")


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
    "score",
    "trace",
    "wrap",
]
