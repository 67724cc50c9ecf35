"""Tiny random-weight models of each supported family, with an offline byte-level tokenizer."""

from steerlab.testing.tiny import TINY_FAMILIES, tiny_model, tiny_tokenizer

__all__ = ["TINY_FAMILIES", "tiny_model", "tiny_tokenizer"]
