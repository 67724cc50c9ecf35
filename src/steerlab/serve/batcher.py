"""Collect concurrent requests and run those with the same sampling settings as one batched generate."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from steerlab.engine.generate import Generation, generate
from steerlab.interventions.specs import Intervention
from steerlab.models.loading import Model, Prompt


@dataclass(frozen=True)
class Sampling:
    """Settings that must be equal for requests to share a forward pass."""

    chat: bool
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]


@dataclass
class Job:
    prompt: Prompt
    sampling: Sampling
    interventions: Sequence[Intervention]
    seed: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Generation | None = None
    error: BaseException | None = None


class Batcher:
    """One worker thread owns the model; request threads enqueue jobs and wait for their result."""

    def __init__(self, model: Model, max_batch: int = 8, wait_s: float = 0.02):
        self.model = model
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batches_run = 0
        self.largest_batch = 0
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="steerlab-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job, timeout: float | None = None) -> Generation:
        """Enqueue a job and block until its generation is ready (re-raises the batch's error)."""
        self._queue.put(job)
        if not job.done.wait(timeout):
            raise TimeoutError("generation did not finish in time")
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _gather(self, first: Job) -> list[Job]:
        jobs, deadline = [first], time.monotonic() + self.wait_s
        while len(jobs) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            groups: dict[Sampling, list[Job]] = {}
            for job in self._gather(first):
                groups.setdefault(job.sampling, []).append(job)
            for sampling, jobs in groups.items():
                self._run(sampling, jobs)

    def _run(self, s: Sampling, jobs: list[Job]) -> None:
        try:
            shared = all(j.interventions is jobs[0].interventions for j in jobs)
            ivs: Any = list(jobs[0].interventions) if shared else [list(j.interventions) for j in jobs]
            results = generate(
                self.model, [j.prompt for j in jobs], ivs, max_new_tokens=s.max_tokens, temperature=s.temperature,
                top_p=s.top_p, stop=s.stop, seed=[j.seed for j in jobs], chat=s.chat, batch_size=len(jobs),
            )
            self.batches_run += 1
            self.largest_batch = max(self.largest_batch, len(jobs))
            for job, gen in zip(jobs, results):
                job.result = gen
        except BaseException as exc:  # noqa: BLE001 - handed to each waiting request
            for job in jobs:
                job.error = exc
        for job in jobs:
            job.done.set()
