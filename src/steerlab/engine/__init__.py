"""The generation engine: batched cached decoding, teacher-forced scoring, activation tracing."""

from steerlab.engine.generate import Generation, generate
from steerlab.engine.sampling import Sampling
from steerlab.engine.scoring import Score, score, trace

__all__ = ["Generation", "generate", "Sampling", "Score", "score", "trace"]
