"""A bounded queue of generation jobs; one worker thread batches jobs with equal sampling settings.

Request handlers (on the asyncio loop) submit jobs and await them; the worker runs them through the
Backend and hands text pieces back to the loop as they are decoded. A full queue refuses new jobs (the
server answers 503); a cancelled job (client gone) is skipped or stops decoding at the next token; a
batch that fails is retried one job at a time, so one bad job never fails the others.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from steerlab.serve.backend import Backend, GenRequest, GenResult


class QueueFull(Exception):
    """The server already holds as many waiting jobs as it allows."""


@dataclass(eq=False)
class Job:
    """One request in flight: its pieces and result reach the event loop through `events`."""

    request: GenRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(
        default_factory=asyncio.Queue
    )  # ("text", str) ... then ("done", GenResult) | ("error", exc)
    cancelled: threading.Event = field(default_factory=threading.Event)
    sent: int = 0  # characters already handed out (a retried job skips them)
    _seen: int = 0

    def cancel(self) -> None:
        self.cancelled.set()

    def _push(self, kind: str, payload: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancelled.set()

    def text(self, piece: str) -> None:
        """A piece of decoded text; on a retry, the part already sent is skipped."""
        start, self._seen = self._seen, self._seen + len(piece)
        new = piece[max(0, self.sent - start) :]
        if new:
            self.sent += len(new)
            self._push("text", new)


class Batcher:
    """One worker thread owns the backend; request handlers enqueue jobs and read their events."""

    def __init__(self, backend: Backend, max_batch: int = 8, wait_s: float = 0.02, max_queue: int = 256):
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batches_run = 0
        self.largest_batch = 0
        self.retried_alone = 0
        self.cancelled = 0  # jobs skipped or stopped mid-decode because their client left
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="steerlab-batcher", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Enqueue a job; raises QueueFull when the queue is at its bound."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull() from None

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        while True:
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:  # drop waiting jobs so the worker can see the stop
                try:
                    job = self._queue.get_nowait()
                    if job is not None:
                        job._push("error", RuntimeError("The server is shutting down."))
                except queue.Empty:
                    pass
        self._thread.join(timeout=10)

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
        live = [j for j in jobs if not j.cancelled.is_set()]
        self.cancelled += len(jobs) - len(live)
        return live

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            groups: dict[Any, list[Job]] = {}
            for job in self._gather(first):
                groups.setdefault(job.request.params, []).append(job)
            for jobs in groups.values():
                if not self._run(jobs) and len(jobs) > 1:
                    self.retried_alone += len(jobs)
                    for job in jobs:
                        if not job.cancelled.is_set():
                            self._run([job])

    def _run(self, jobs: list[Job]) -> bool:
        """Run jobs as one batch; False (and nothing reported) when it failed and there are several to retry."""

        def on_text(i: int, piece: str) -> bool:
            if piece:
                jobs[i].text(piece)
            if jobs[i].cancelled.is_set():
                self.cancelled += 1
                return True
            return False

        for job in jobs:
            job._seen = 0
        try:
            results: list[GenResult] = self.backend.generate([j.request for j in jobs], on_text)
        except BaseException as exc:  # noqa: BLE001 - reported to the job, or the batch is retried job by job
            if len(jobs) > 1:
                return False
            jobs[0]._push("error", exc)
            return True
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(jobs))
        for job, result in zip(jobs, results):
            job._push("done", result)
        return True
