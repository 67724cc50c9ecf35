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

__all__ = [
    "AblateLatents", "AddVector", "ClampLatents", "Generation", "MaskUnits", "Model", "Record", "Sae",
    "SaeConfig", "Span", "SteerLatent", "SteerlabError", "apply", "generate", "load", "score", "trace", "wrap",
]
