"""What the pool runs: a loader that builds each actor's context once, and a work function over items.

Both must be picklable (a worker on another machine builds its own context). Items are cut into the
same fixed batches everywhere, so a batch gives the same result in-process, on any worker, and after a re-queue.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")

# Builds an actor's context (e.g. a loaded model) once, inside the actor.
Loader = Callable[[], Any]
# work(context, item) -> result: one unit of work on an actor; the driver receives the result.
Work = Callable[[Any, Any], Any]


def plan_batches(pending: Sequence[T], batch_size: int, max_batches: int | None = None) -> list[list[T]]:
    """Items in order, cut into batches of batch_size (the last may be shorter); at most max_batches of them."""
    batches = [list(pending[i : i + batch_size]) for i in range(0, len(pending), batch_size)]
    return batches if max_batches is None else batches[:max_batches]


class ObjectLoader:
    """Ship already-built objects to the workers as their context (small models and tests).

    The context is the tuple of the objects given; a big model should use a loader that loads it inside the worker.
    """

    def __init__(self, *objects: Any):
        self.objects = objects

    def __call__(self) -> tuple[Any, ...]:
        return self.objects
