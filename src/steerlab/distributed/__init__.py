"""Distributed ESR generation: fixed batches of trials on Ray actors, written once by the driver."""

from steerlab.distributed.ray_runner import RayOptions, generate_pending_ray, require_ray
from steerlab.distributed.work import ConfigLoader, ObjectLoader, generate_trials, plan_batches

__all__ = [
    "ConfigLoader",
    "ObjectLoader",
    "RayOptions",
    "generate_pending_ray",
    "generate_trials",
    "plan_batches",
    "require_ray",
]
