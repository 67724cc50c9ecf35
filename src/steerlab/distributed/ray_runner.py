"""Spread items of work over Ray actors; the driver alone receives the results, once per item.

Each actor builds its context once (`loader()`, e.g. loads the model; one GPU per actor when the
cluster has GPUs), then runs `work(context, item)` for every item it is handed. The driver keeps a
queue of items, hands one to each idle actor, and passes each finished item's result to `on_result`
exactly once. An item whose actor dies is put back at the front of the queue; the actor is restarted
by Ray (up to `max_restarts` times) or retired, and the run goes on with the live ones.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from steerlab.distributed.work import Loader, Work
from steerlab.errors import SteerlabError


def require_ray():
    """Import ray, or say how to install it."""
    try:
        import ray
    except ImportError:
        raise SteerlabError("The Ray runner needs ray: pip install 'steerlab[ray]' (or drop --ray).") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: address ('local' starts a cluster here; 'auto' or host:port joins one)."""

    address: str = "local"
    workers: int | None = None  # default: one per GPU, else one per `threads` CPUs
    threads: int = 1  # CPU threads per actor (CPU clusters)
    gpus_per_worker: int = 1  # GPUs per actor on GPU clusters (a model sharded over several GPUs)
    max_restarts: int = 1  # per actor, after which it is retired


class PoolWorker:
    """A Ray actor: builds its context once (`loader()`), then runs `work(context, item)` on each item it gets."""

    def __init__(self, loader: Loader, work: Work, threads: int):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.context = loader()
        self.work = work

    def run(self, item: Any) -> Any:
        return self.work(self.context, item)

    def pid(self) -> int:
        return os.getpid()


def connect(address: str, num_cpus: int | None = None) -> Any:
    """Join a running cluster, or start a local one ('local'); a no-op when already connected."""
    ray = require_ray()
    if not ray.is_initialized():
        if address in (
            "",
            "local",
        ):  # "local" always starts a fresh instance, never joins a cluster found via RAY_ADDRESS
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def actor_plan(resources: dict[str, float], opts: RayOptions) -> tuple[int, dict[str, float]]:
    """(number of actors, resources each asks for): one GPU each when the cluster has GPUs, else `threads` CPUs."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return opts.workers or max(1, gpus // opts.gpus_per_worker), {"num_gpus": opts.gpus_per_worker, "num_cpus": 1}
    return opts.workers or max(1, int(resources.get("CPU", 1)) // opts.threads), {"num_cpus": opts.threads}


def start_workers(loader: Loader, work: Work, opts: RayOptions) -> list[Any]:
    """Start the actors; each builds its context once (torch threads = its CPU share on CPU clusters)."""
    ray = require_ray()
    n, ask = actor_plan(ray.cluster_resources(), opts)
    actor = ray.remote(max_restarts=opts.max_restarts, max_task_retries=0, **ask)(PoolWorker)
    threads = 0 if "num_gpus" in ask else opts.threads
    # One stored copy of the loader and the work function, referenced by the returned list for as long as the actors
    # live: a restarted actor re-runs __init__ with them, and a by-value argument could already be freed then (Ray's
    # reference counting).
    refs = (ray.put(loader), ray.put(work))
    return _Workers([actor.remote(*refs, threads) for _ in range(n)], refs)


class _Workers(list):
    """The actor handles, plus the stored loader and work function their restarts need."""

    def __init__(self, handles: list[Any], refs: tuple[Any, ...]):
        super().__init__(handles)
        self.refs = refs


def run_items(
    items: Sequence[Any],
    workers: list[Any],
    on_result: Callable[[int, Any], None],
    *,
    max_restarts: int = 1,
) -> int:
    """Run every item on the actors, re-queueing the items of dead actors; returns how many items finished.

    on_result(item_index, result) is called on the driver exactly once per item, as each finishes (store writes,
    progress bars), even if an item was ever handed out twice.
    """
    ray = require_ray()
    from ray.exceptions import ActorUnavailableError, RayActorError

    queue = deque(range(len(items)))
    idle = list(range(len(workers)))
    inflight: dict[Any, tuple[int, int]] = {}  # object ref -> (actor index, item index)
    failures = [0] * len(workers)
    done: set[int] = set()
    last_error = ""
    while queue or inflight:
        while queue and idle:
            a, b = idle.pop(0), queue.popleft()
            inflight[workers[a].run.remote(items[b])] = (a, b)
        if not inflight:
            raise SteerlabError(
                f"Every Ray worker died ({last_error.strip().splitlines()[-1] if last_error else 'no error given'}); "
                f"{len(queue)} items of work are left: fix the cause and rerun the same command to finish them."
            )
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            a, b = inflight.pop(ref)
            try:
                result = ray.get(ref)
            except RayActorError as err:
                last_error = str(err)
                queue.appendleft(b)  # the item goes to the next live worker (or this one once Ray restarts it)
                if isinstance(err, ActorUnavailableError):  # restarting: not a new death, try it again shortly
                    time.sleep(0.2)
                    idle.append(a)
                    continue
                failures[a] += 1
                if failures[a] <= max_restarts:
                    idle.append(a)
                continue
            if b not in done:  # a result is passed on once even if its item was ever handed out twice
                done.add(b)
                on_result(b, result)
            idle.append(a)
    return len(done)


def run_pool(
    items: Sequence[Any],
    work: Work,
    loader: Loader,
    on_result: Callable[[int, Any], None],
    opts: RayOptions = RayOptions(),
) -> int:
    """Run work(context, item) over the items on a Ray cluster (started here for address 'local'); returns items done.

    Args:
        items: the units of work (e.g. fixed batches of trials), each picklable.
        work: a picklable function (context, item) -> result, run on the actors.
        loader: a picklable function () -> context, run once per actor (e.g. load the model).
        on_result: called on the driver with (item index, result), once per item, as each finishes.
        opts: the cluster address and the actors' shape.
    """
    if not items:
        return 0
    ray = connect(opts.address)
    workers = start_workers(loader, work, opts)
    try:
        return run_items(items, workers, on_result, max_restarts=opts.max_restarts)
    finally:
        for w in workers:
            ray.kill(w)
