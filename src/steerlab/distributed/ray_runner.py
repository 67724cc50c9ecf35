"""Spread ESR generation batches over Ray actors; the driver alone writes results into the run store.

Each actor loads the model once (one GPU per actor when the cluster has GPUs). The driver keeps a
queue of fixed batches, hands one to each idle actor, and writes every finished batch with the
store's idempotent keys. A batch whose actor dies is put back at the front of the queue; the actor is
restarted by Ray (up to `max_restarts` times) or retired, and the run goes on with the live ones.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from steerlab.distributed.work import GenerationRow, Loader, generate_trials
from steerlab.errors import SteerlabError
from steerlab.esr.config import EsrConfig
from steerlab.store import RunStore, Trial


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


class TrialWorker:
    """A Ray actor: loads the model and SAE once, then generates whole batches of trials."""

    def __init__(self, loader: Loader, cfg: EsrConfig, threads: int):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.model, self.sae = loader()
        self.cfg = cfg

    def run(self, trials: list[Trial]) -> list[GenerationRow]:
        return generate_trials(self.model, self.sae, self.cfg, trials)

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


def start_workers(loader: Loader, cfg: EsrConfig, opts: RayOptions) -> list[Any]:
    """Start the actors; each loads the model once (torch threads = its CPU share on CPU clusters)."""
    ray = require_ray()
    n, ask = actor_plan(ray.cluster_resources(), opts)
    actor = ray.remote(max_restarts=opts.max_restarts, max_task_retries=0, **ask)(TrialWorker)
    threads = 0 if "num_gpus" in ask else opts.threads
    # One stored copy of the loader, referenced by the returned list for as long as the actors live: a restarted
    # actor re-runs __init__ with it, and a by-value argument could already be freed then (Ray's reference counting).
    loader_ref = ray.put(loader)
    return _Workers([actor.remote(loader_ref, cfg, threads) for _ in range(n)], loader_ref)


class _Workers(list):
    """The actor handles, plus the stored loader their restarts need."""

    def __init__(self, handles: list[Any], loader_ref: Any):
        super().__init__(handles)
        self.loader_ref = loader_ref


def run_batches(
    store: RunStore,
    batches: Sequence[list[Trial]],
    workers: list[Any],
    *,
    max_restarts: int = 1,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Run every batch on the actors, re-queueing the batches of dead actors; returns generations written.

    on_batch(batch_index, rows) is called after each batch is stored (progress bars, tests).
    """
    ray = require_ray()
    from ray.exceptions import ActorUnavailableError, RayActorError

    queue = deque(range(len(batches)))
    idle = list(range(len(workers)))
    inflight: dict[Any, tuple[int, int]] = {}  # object ref -> (actor index, batch index)
    failures = [0] * len(workers)
    done: set[int] = set()
    written, last_error = 0, ""
    while queue or inflight:
        while queue and idle:
            a, b = idle.pop(0), queue.popleft()
            inflight[workers[a].run.remote(batches[b])] = (a, b)
        if not inflight:
            raise SteerlabError(
                f"Every Ray worker died ({last_error.strip().splitlines()[-1] if last_error else 'no error given'}); "
                f"{len(queue)} batches are left: fix the cause and rerun the same command to finish them."
            )
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            a, b = inflight.pop(ref)
            try:
                rows = ray.get(ref)
            except RayActorError as err:
                last_error = str(err)
                queue.appendleft(b)  # the batch goes to the next live worker (or this one once Ray restarts it)
                if isinstance(err, ActorUnavailableError):  # restarting: not a new death, try it again shortly
                    time.sleep(0.2)
                    idle.append(a)
                    continue
                failures[a] += 1
                if failures[a] <= max_restarts:
                    idle.append(a)
                continue
            if b not in done:  # a batch is written once even if it was ever handed out twice
                done.add(b)
                written += store.put_generations(rows)
                if on_batch is not None:
                    on_batch(b, len(rows))
            idle.append(a)
    return written


def generate_pending_ray(
    store: RunStore,
    batches: Sequence[list[Trial]],
    cfg: EsrConfig,
    loader: Loader,
    opts: RayOptions = RayOptions(),
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Generate these batches on a Ray cluster (started here for address 'local'); returns generations written."""
    if not batches:
        return 0
    ray = connect(opts.address)
    workers = start_workers(loader, cfg, opts)
    try:
        return run_batches(store, batches, workers, max_restarts=opts.max_restarts, on_batch=on_batch)
    finally:
        for w in workers:
            ray.kill(w)
