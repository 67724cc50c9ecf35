"""Loading models and mapping their architectures."""

from steerlab.models.arch import SITES, Arch
from steerlab.models.loading import Model, load, wrap
from steerlab.models.packaged import DEFAULT_MODEL, PACKAGED

__all__ = ["Arch", "SITES", "Model", "load", "wrap", "PACKAGED", "DEFAULT_MODEL"]
