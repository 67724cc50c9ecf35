"""One SQLite file per run directory: config, trials, generations, grades, activation-file index.

Writes are idempotent (keyed by trial identity; a generation's first write wins; a successful grade
replaces an error but never the reverse), so a killed run restarted with the same config redoes only
the missing work. Several processes may write at once: WAL journal, a busy timeout, `BEGIN
IMMEDIATE` transactions and retries with backoff on lock contention.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from steerlab.errors import SteerlabError
from steerlab.store.grades import Grade
from steerlab.store.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from steerlab.store.trial import Trial

DB_NAME = "run.sqlite"
MAX_GRADE_TRIES = 5  # a trial whose grade failed this many times is abandoned (not retried again, counted as such)
T = TypeVar("T")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The top-level keys whose JSON values differ between two records (a key missing on one side differs).

    Args:
        old: one record, e.g. as read back from JSON.
        new: the other, e.g. freshly built (non-JSON values compare by their str()).

    Returns:
        The differing keys, sorted; empty when the records are the same.
    """
    return sorted(k for k in set(old) | set(new) if _canonical(old.get(k)) != _canonical(new.get(k)))


class RunStore:
    """The store of one run directory. Open it with the run config; a different config is refused."""

    def __init__(self, run_dir: str | os.PathLike, config: dict[str, Any] | None = None, *, create: bool = True):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        if not self.path.exists() and not create:
            raise SteerlabError(f"No run store at {self.path}; check the run directory.")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        if self.path.is_dir():
            raise SteerlabError(f"{self.path} is a folder, not a run store; move it away or use a new run directory.")
        self._db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            self._check_schema()
        except BaseException:
            self._db.close()
            raise
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._retry(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._write(lambda db: db.executescript(SCHEMA), script=True)
        self._write(lambda db: db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,)))
        if config is not None:
            self._pin_config(config)

    def _check_schema(self) -> None:
        """One sentence for a file that is not a steerlab store, or one of a newer schema; older ones are migrated."""
        where = f"{self.path}"
        try:
            self._db.execute("PRAGMA busy_timeout = 60000")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            row = (
                self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                if "meta" in tables
                else None
            )
        except sqlite3.DatabaseError:
            raise SteerlabError(
                f"{where} is not a readable SQLite run store (corrupt or another kind of file); "
                "move it away or use a new run directory."
            ) from None
        if not tables:
            return  # a new (or empty) file
        if row is None or "trials" not in tables:
            raise SteerlabError(
                f"{where} is an SQLite file of another program, not a steerlab run store; use a new run directory."
            )
        try:
            version = int(row[0])
        except ValueError:
            raise SteerlabError(
                f"{where} has an unreadable schema version '{row[0]}'; use a new run directory."
            ) from None
        current = int(SCHEMA_VERSION)
        if version > current:
            raise SteerlabError(
                f"{where} was written by a newer steerlab (store schema {version}; this one reads up to {current}); "
                "upgrade steerlab to open it."
            )
        while version < current:
            if version not in MIGRATIONS:
                raise SteerlabError(
                    f"{where} has the old store schema {version}, which this steerlab cannot migrate; "
                    "rerun into a new run directory."
                )
            self._db.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[version]}; "
                f"UPDATE meta SET value = '{version + 1}' WHERE key = 'schema_version'; COMMIT;"
            )
            version += 1

    # --- plumbing -------------------------------------------------------------------------------------
    def _retry(self, fn: Callable[[], T], tries: int = 12) -> T:
        for attempt in range(tries):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == tries - 1:
                    raise
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[sqlite3.Connection], T], script: bool = False) -> T:
        """Run fn inside one BEGIN IMMEDIATE transaction, retrying on lock contention."""

        def attempt() -> T:
            with self._lock:
                if script:
                    return fn(self._db)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result

        return self._retry(attempt)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        def attempt():
            with self._lock:
                cur = self._db.execute(sql, args)
                cols = [d[0] for d in cur.description]
                return [dict(zip(cols, row)) for row in cur.fetchall()]

        return self._retry(attempt)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- config ---------------------------------------------------------------------------------------
    def _pin_config(self, config: dict[str, Any]) -> None:
        text = _canonical(config)
        self._write(lambda db: db.execute("INSERT OR IGNORE INTO meta VALUES ('config', ?)", (text,)))
        stored = self.config
        if _canonical(stored) != text:
            differ = differing_keys(stored, config)
            raise SteerlabError(
                f"The run in {self.run_dir} was started with a different config (differs in: {', '.join(differ) or '?'}); "
                "resume with the same config or use a new run directory."
            )

    @property
    def config(self) -> dict[str, Any]:
        rows = self._read("SELECT value FROM meta WHERE key = 'config'")
        return json.loads(rows[0]["value"]) if rows else {}

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value (e.g. a judge's pinned config) under a key; last write wins."""
        self._write(lambda db: db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _canonical(value))))

    def meta(self, prefix: str = "") -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM meta WHERE key LIKE ? || '%'", (prefix,))
        return {r["key"]: json.loads(r["value"]) if r["key"] != "schema_version" else r["value"] for r in rows}

    # --- trials ---------------------------------------------------------------------------------------
    def add_trials(self, trials: Iterable[Trial]) -> int:
        """Insert trials that are not stored yet; returns how many were new."""
        rows = [
            (t.key, t.condition, t.latent, t.strength, t.prompt, t.seed, t.label, _canonical(t.extra), time.time())
            for t in trials
        ]

        def insert(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO trials (trial_key, condition, latent, strength, prompt, seed, label, extra, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            return db.total_changes - before

        return self._write(insert)

    @staticmethod
    def _trial(row: dict[str, Any]) -> Trial:
        return Trial(
            row["condition"],
            row["prompt"],
            row["seed"],
            row["latent"],
            row["strength"],
            row["label"],
            json.loads(row["extra"]),
        )

    def trials(self, condition: str | None = None) -> list[Trial]:
        sql = "SELECT * FROM trials" + (" WHERE condition = ?" if condition else "") + " ORDER BY rowid"
        return [self._trial(r) for r in self._read(sql, (condition,) if condition else ())]

    def pending(self, limit: int | None = None) -> list[Trial]:
        """Trials that have no generation yet, in insertion order."""
        sql = "SELECT t.* FROM trials t LEFT JOIN generations g USING (trial_key) WHERE g.trial_key IS NULL ORDER BY t.rowid"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._trial(r) for r in self._read(sql)]

    def claim(self, worker: str, n: int, lease_s: float = 600.0) -> list[Trial]:
        """Atomically take up to n pending trials for one worker, so several processes can share one run.

        Claims older than lease_s seconds may be taken again (their worker is presumed dead).
        """

        def take(db: sqlite3.Connection) -> list[Trial]:
            now = time.time()
            cur = db.execute(
                "SELECT t.* FROM trials t LEFT JOIN generations g USING (trial_key) WHERE g.trial_key IS NULL "
                "AND (t.claimed_by IS NULL OR t.claimed_by = ? OR t.claimed_at < ?) ORDER BY t.rowid LIMIT ?",
                (worker, now - lease_s, int(n)),
            )
            cols = [d[0] for d in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            db.executemany(
                "UPDATE trials SET claimed_by = ?, claimed_at = ? WHERE trial_key = ?",
                [(worker, now, r["trial_key"]) for r in rows],
            )
            return [self._trial(r) for r in rows]

        return self._write(take)

    # --- generations ----------------------------------------------------------------------------------
    def put_generation(
        self,
        trial_key: str,
        text: str,
        token_ids: Sequence[int] | None = None,
        finish_reason: str = "",
        meta: dict[str, Any] | None = None,
    ) -> bool:
        """Store a trial's generation; the first write wins and a replay is a no-op. True if stored now."""
        return self.put_generations([(trial_key, text, token_ids, finish_reason, meta)]) == 1

    def put_generations(
        self, items: Iterable[tuple[str, str, Sequence[int] | None, str, dict[str, Any] | None]]
    ) -> int:
        rows = [
            (k, text, json.dumps(list(ids)) if ids is not None else None, reason, _canonical(meta or {}), time.time())
            for k, text, ids, reason, meta in items
        ]

        def insert(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO generations VALUES (?,?,?,?,?,?)", rows)
            return db.total_changes - before

        return self._write(insert)

    def generation(self, trial_key: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM generations WHERE trial_key = ?", (trial_key,))
        return rows[0] if rows else None

    # --- grades ---------------------------------------------------------------------------------------
    def put_grade(self, trial_key: str, grade: Grade) -> None:
        """Record a grade; a success replaces an earlier error, an error never replaces a success."""
        self.put_grades([(trial_key, grade)])

    def put_grades(self, items: Iterable[tuple[str, Grade]]) -> None:
        rows = [
            (
                k,
                g.judge_id,
                g.rubric_version,
                json.dumps([a.to_dict() for a in g.attempts], ensure_ascii=False),
                g.error,
                g.raw,
                time.time(),
            )
            for k, g in items
        ]
        self._write(
            lambda db: db.executemany(
                "INSERT INTO grades (trial_key, judge_id, rubric_version, attempts, error, raw, created_at) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT (trial_key, judge_id, rubric_version) DO UPDATE SET attempts = excluded.attempts, error = excluded.error, "
                "raw = excluded.raw, created_at = excluded.created_at, tries = grades.tries + 1 WHERE grades.error IS NOT NULL",
                rows,
            )
        )

    def grades(self, judge_id: str | None = None, rubric_version: str | None = None) -> dict[str, Grade]:
        """trial_key -> Grade for one judge (or all grades when judge_id is None; then keys may repeat per judge)."""
        sql, args = "SELECT * FROM grades WHERE 1=1", []
        if judge_id is not None:
            sql, args = sql + " AND judge_id = ?", args + [judge_id]
        if rubric_version is not None:
            sql, args = sql + " AND rubric_version = ?", args + [rubric_version]
        return {r["trial_key"]: self._grade(r) for r in self._read(sql, args)}

    @staticmethod
    def _grade(row: dict[str, Any]) -> Grade:
        return Grade.from_dict({**row, "attempts": json.loads(row["attempts"])})

    def judges(self) -> list[tuple[str, str]]:
        """(judge_id, rubric_version) pairs that have grades in this run."""
        return [
            (r["judge_id"], r["rubric_version"])
            for r in self._read("SELECT DISTINCT judge_id, rubric_version FROM grades ORDER BY judge_id")
        ]

    def ungraded(self, judge_id: str, rubric_version: str, max_tries: int = MAX_GRADE_TRIES) -> list[tuple[Trial, str]]:
        """(trial, response) for generations with no successful grade from this judge and rubric.

        A trial whose grade already failed max_tries times is abandoned: it is left out (see grade_counts).
        """
        rows = self._read(
            "SELECT t.*, g.text AS response FROM trials t JOIN generations g USING (trial_key) "
            "LEFT JOIN grades r ON r.trial_key = t.trial_key AND r.judge_id = ? AND r.rubric_version = ? "
            "WHERE r.trial_key IS NULL OR (r.error IS NOT NULL AND r.tries < ?) ORDER BY t.rowid",
            (judge_id, rubric_version, max_tries),
        )
        return [(self._trial(r), r["response"]) for r in rows]

    def grade_counts(self, judge_id: str, rubric_version: str, max_tries: int = MAX_GRADE_TRIES) -> dict[str, int]:
        """How many generated trials this judge graded, failed (to retry), abandoned (failed max_tries times) or never tried."""
        row = self._read(
            "SELECT COUNT(*) AS generated, "
            "SUM(r.trial_key IS NOT NULL AND r.error IS NULL) AS graded, "
            "SUM(r.error IS NOT NULL AND r.tries < ?) AS failed, "
            "SUM(r.error IS NOT NULL AND r.tries >= ?) AS abandoned "
            "FROM generations g LEFT JOIN grades r ON r.trial_key = g.trial_key AND r.judge_id = ? AND r.rubric_version = ?",
            (max_tries, max_tries, judge_id, rubric_version),
        )[0]
        counts = {k: int(row[k] or 0) for k in ("generated", "graded", "failed", "abandoned")}
        counts["not_tried"] = counts["generated"] - counts["graded"] - counts["failed"] - counts["abandoned"]
        return counts

    # --- summaries ------------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        row = self._read(
            "SELECT (SELECT COUNT(*) FROM trials) AS trials, (SELECT COUNT(*) FROM generations) AS generations, "
            "(SELECT COUNT(*) FROM grades WHERE error IS NULL) AS grades, (SELECT COUNT(*) FROM grades WHERE error IS NOT NULL) AS grade_errors, "
            "(SELECT COUNT(*) FROM activations) AS activations"
        )[0]
        return {k: int(v) for k, v in row.items()}

    def rows(self) -> Iterator[dict[str, Any]]:
        """One flat dict per trial with its generation and every grade, for export."""
        grades: dict[str, list[dict[str, Any]]] = {}
        for r in self._read("SELECT * FROM grades ORDER BY judge_id"):
            g = self._grade(r)
            grades.setdefault(r["trial_key"], []).append(
                {
                    "judge_id": g.judge_id,
                    "rubric_version": g.rubric_version,
                    "error": g.error,
                    "n_attempts": g.n_attempts,
                    "first_score": g.first_score,
                    "last_score": g.last_score,
                    "attempts": [a.to_dict() for a in g.attempts],
                }
            )
        for r in self._read(
            "SELECT t.*, g.text, g.token_ids, g.finish_reason, g.meta FROM trials t LEFT JOIN generations g USING (trial_key) ORDER BY t.rowid"
        ):
            yield {
                "trial_key": r["trial_key"],
                "condition": r["condition"],
                "latent": r["latent"],
                "strength": r["strength"],
                "prompt": r["prompt"],
                "seed": r["seed"],
                "label": r["label"],
                "extra": json.loads(r["extra"]),
                "response": r["text"],
                "finish_reason": r["finish_reason"],
                "n_tokens": len(json.loads(r["token_ids"])) if r["token_ids"] else None,
                "grades": grades.get(r["trial_key"], []),
            }
