"""A grade cache in SQLite keyed by (judge id, rubric version, prompt, response, steering label).

Only successful grades are cached, so a failed call is retried next time. Safe to share between
processes (WAL journal, busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Sequence

from steerlab.judges.base import Judge
from steerlab.judges.types import Grade, GradeRequest


def grade_key(judge_id: str, rubric_version: str, prompt: str, response: str, steering_label: str = "") -> str:
    """A stable hash of everything that changes a grade."""
    blob = json.dumps([judge_id, rubric_version, prompt, response, steering_label], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def default_cache_path() -> Path:
    import os

    root = Path(os.environ.get("STEERLAB_CACHE", Path.home() / ".cache" / "steerlab"))
    return root / "grades.sqlite"


class GradeCache:
    """Key -> Grade JSON; thread-safe within a process, WAL-safe across processes."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS grades (key TEXT PRIMARY KEY, grade TEXT NOT NULL)")

    def get(self, key: str) -> Grade | None:
        with self._lock:
            row = self._db.execute("SELECT grade FROM grades WHERE key = ?", (key,)).fetchone()
        return Grade.from_dict(json.loads(row[0])) if row else None

    def put(self, key: str, grade: Grade) -> None:
        if not grade.ok:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO grades (key, grade) VALUES (?, ?)", (key, json.dumps(grade.to_dict()))
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM grades").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class CachedJudge:
    """Wraps a judge: cached grades are returned without a call; new successful grades are stored."""

    def __init__(self, judge: Judge, cache: GradeCache):
        self.judge = judge
        self.cache = cache
        self.judge_id = judge.judge_id
        self.rubric_version = judge.rubric_version
        self.hits = 0

    def _key(self, it: GradeRequest) -> str:
        return grade_key(self.judge_id, self.rubric_version, it.prompt, it.response, it.steering_label)

    def grade(self, prompt: str, response: str, steering_label: str = "") -> Grade:
        return self.grade_many([GradeRequest(prompt, response, steering_label)])[0]

    def grade_many(self, items: Sequence[GradeRequest], progress: bool = False) -> list[Grade]:
        items = list(items)
        keys = [self._key(it) for it in items]
        out: list[Grade | None] = [self.cache.get(k) for k in keys]
        self.hits += sum(g is not None for g in out)
        todo = [i for i, g in enumerate(out) if g is None]
        for i, grade in zip(todo, self.judge.grade_many([items[i] for i in todo], progress=progress)):
            self.cache.put(keys[i], grade)
            out[i] = grade
        return out  # type: ignore[return-value]

    def check(self) -> None:
        self.judge.check()

    def config(self) -> dict[str, Any]:
        return self.judge.config()

    def __repr__(self) -> str:
        return f"CachedJudge({self.judge!r})"
