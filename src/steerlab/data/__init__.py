"""Text corpora for harvesting activations: the offline default, user files, Hugging Face datasets."""

from steerlab.data.corpus import Corpus, Document, default_corpus, load_corpus

__all__ = ["Corpus", "Document", "default_corpus", "load_corpus"]
