"""A generic pool of Ray actors: any picklable work function over items, re-queueing the items of dead actors."""

from steerlab.distributed.ray_runner import RayOptions, require_ray, run_items, run_pool, start_workers
from steerlab.distributed.work import Loader, ObjectLoader, Work, plan_batches

__all__ = [
    "Loader",
    "ObjectLoader",
    "RayOptions",
    "Work",
    "plan_batches",
    "require_ray",
    "run_items",
    "run_pool",
    "start_workers",
]
