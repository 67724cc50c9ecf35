"""Sparse autoencoders: the Sae module, readers/writer for public formats, trainer, evaluation, inspection."""

from steerlab.sae.core import Sae, SaeConfig
from steerlab.sae.hookpoints import from_hidden_states_index, hidden_states_index, hook_name, parse_hook_name
from steerlab.sae.loading import load_sae, save_sae

__all__ = [
    "Sae",
    "SaeConfig",
    "from_hidden_states_index",
    "hidden_states_index",
    "hook_name",
    "load_sae",
    "parse_hook_name",
    "save_sae",
]
