"""Persona features: model diffing over SAE latents, validation by steering, organisms, a detector, re-alignment."""

from steerlab.persona.diff import DiffResult, LatentChange, check_pair, diff_models
from steerlab.persona.prompts import EVAL_PROMPTS, HELD_OUT_PROMPTS, load_prompts
from steerlab.persona.validate import SteerPoint, Validation, median_residual_norm, steer_sweep, steering_vector

__all__ = [
    "DiffResult",
    "EVAL_PROMPTS",
    "HELD_OUT_PROMPTS",
    "LatentChange",
    "SteerPoint",
    "Validation",
    "check_pair",
    "diff_models",
    "load_prompts",
    "median_residual_norm",
    "steer_sweep",
    "steering_vector",
]
# The heavier parts (organism, detector, realign, study) are imported from their modules:
# steerlab.persona.study.run_study, steerlab.persona.organism.build_organism, steerlab.persona.detector.auroc, ...
