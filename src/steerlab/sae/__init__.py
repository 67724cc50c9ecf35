"""Sparse autoencoders: the Sae module (readers, trainer and evaluation build on it)."""

from steerlab.sae.core import Sae, SaeConfig

__all__ = ["Sae", "SaeConfig"]
