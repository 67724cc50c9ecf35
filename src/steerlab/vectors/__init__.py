"""Concept vectors trained from contrastive prompt sets."""

from steerlab.vectors.concept import ConceptVector, train_vector

__all__ = ["ConceptVector", "train_vector"]
