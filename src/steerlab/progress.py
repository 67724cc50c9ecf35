"""Progress display shared by every long-running step (rich bars on a terminal, timed log lines otherwise)."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner with a message for work of unknown length."""
    with console.status(message):
        yield


class LogProgress:
    """The `Progress` calls steerlab uses, printed as plain lines (for logs, CI and pipes, where a live bar never shows).

    A task prints when it has moved another 10% or `every` seconds have passed, and when it completes.
    """

    def __init__(self, every: float = 30.0, out: Any = None):
        self.every = every
        self.out = out
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = {
            "description": description,
            "total": total,
            "completed": completed,
            "info": fields.get("info", ""),
            "start": time.monotonic(),
            "printed_at": time.monotonic(),
            "printed_frac": -1.0,
        }
        self._maybe_print(tid, force=True)
        return tid

    def update(
        self, task: int, advance: float | None = None, completed: float | None = None, info: str | None = None, **_: Any
    ) -> None:
        t = self.tasks[task]
        if completed is not None:
            t["completed"] = completed
        if advance:
            t["completed"] += advance
        if info is not None:
            t["info"] = info
        self._maybe_print(task)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _maybe_print(self, task: int, force: bool = False) -> None:
        t = self.tasks[task]
        now = time.monotonic()
        total = t["total"]
        frac = t["completed"] / total if total else 0.0
        done = bool(total) and t["completed"] >= total
        if not (force or done or frac - t["printed_frac"] >= 0.1 or now - t["printed_at"] >= self.every):
            return
        if done and t["printed_frac"] >= 1.0:
            return
        elapsed = now - t["start"]
        eta = f", eta {elapsed / frac - elapsed:.0f}s" if 0 < frac < 1 else ""
        count = f"{t['completed']:g}/{total:g}" if total else f"{t['completed']:g}"
        info = f"  {t['info']}" if t["info"] else ""
        print(
            f"[steerlab] {t['description']}: {count} ({elapsed:.0f}s{eta}){info}",
            file=self.out or sys.stderr,
            flush=True,
        )
        t["printed_at"], t["printed_frac"] = now, (1.0 if done else frac)


def progress_bar(enabled: bool = True) -> "Progress | LogProgress":
    """A progress bar with count, ETA and an optional live field `info`; timed log lines when stderr is no terminal."""
    if enabled and sys.stderr is not None and not console.is_terminal:
        return LogProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        disable=not enabled or not sys.stderr,
        transient=False,
    )
