"""Readers for the public SAE formats and the SAELens-compatible writer."""

from steerlab.sae.formats.dictionary_learning import read_dictionary_learning
from steerlab.sae.formats.gemmascope import read_gemmascope
from steerlab.sae.formats.goodfire import read_goodfire
from steerlab.sae.formats.saelens import read_saelens, write_saelens
from steerlab.sae.formats.sparsify import read_sparsify

__all__ = [
    "read_dictionary_learning",
    "read_gemmascope",
    "read_goodfire",
    "read_saelens",
    "read_sparsify",
    "write_saelens",
]
