"""Validate a judge on the project's set: attempt-count accuracy, held-out restart recall, false restarts, score correlation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from steerlab.errors import SteerlabError
from steerlab.judges.types import Grade, GradeRequest
from steerlab.paths import write_text

REQUIRED = {
    "id": str,
    "category": str,
    "prompt": str,
    "response": str,
    "attempts": int,
    "scores": list,
    "restarts": list,
}


def check_row(row: Any, where: str) -> dict[str, Any]:
    """One validated row; anything malformed is one sentence naming the row."""
    if not isinstance(row, dict):
        raise SteerlabError(f"{where} is not a JSON object.")
    for key, typ in REQUIRED.items():
        if key not in row:
            raise SteerlabError(f"{where} has no '{key}' field.")
        if not isinstance(row[key], typ) or (typ is int and isinstance(row[key], bool)):
            raise SteerlabError(f"{where}: '{key}' must be a {typ.__name__}.")
    if row["attempts"] < 1 or len(row["scores"]) != row["attempts"]:
        raise SteerlabError(f"{where}: 'scores' must hold one number per attempt ({row['attempts']}).")
    if not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and 0 <= s <= 100
        for s in row["scores"]
    ):
        raise SteerlabError(f"{where}: every score must be a number from 0 to 100.")
    if len(row["restarts"]) != row["attempts"] - 1:
        raise SteerlabError(f"{where}: 'restarts' must list one restart per attempt after the first.")
    for r in row["restarts"]:
        if not (
            isinstance(r, dict)
            and isinstance(r.get("start"), int)
            and isinstance(r.get("phrase"), str)
            and row["response"][r["start"] : r["start"] + len(r["phrase"])] == r["phrase"]
        ):
            raise SteerlabError(
                f"{where}: each restart needs a 'start' and the 'phrase' found at that position of the response."
            )
    return row


def load_set(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The packaged set (built in code), or a JSONL file of rows in the same shape."""
    if path is None:
        from steerlab.judges.validation.build import build_set

        return build_set()
    path = Path(path)
    if not path.is_file():
        raise SteerlabError(f"No validation set at {path}.")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise SteerlabError(f"Line {n} of {path} is not valid JSON.") from None
        rows.append(check_row(row, f"Line {n} of {path}"))
    if not rows:
        raise SteerlabError(f"The validation set {path} holds no rows.")
    return rows


def write_set(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write rows as UTF-8 JSONL, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def write_json(data: Any, path: str | Path) -> Path:
    """Write a JSON report as UTF-8, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data, indent=1, ensure_ascii=False))
    return path


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def attempt_starts(response: str, grade: Grade) -> list[int] | None:
    """Where each attempt after the first begins in the response, or None when an attempt's text cannot be found."""
    low = response.lower()
    starts, cursor = [], 0
    for attempt in grade.attempts[1:]:
        head = re.split(r"\.\.\.|\u2026|\[", attempt.text.strip())[0].strip().lower()[:40]
        if len(head) < 4:
            return None
        pos = low.find(head, cursor)
        if pos < 0:
            pos = _norm(low).find(_norm(head))
            if pos < 0:
                return None
        starts.append(pos)
        cursor = pos + 1
    return starts


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    return round(cov / math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys)), 4)


def score_rows(rows: Sequence[dict[str, Any]], grades: Sequence[Grade]) -> dict[str, Any]:
    """The validation metrics of one judge's grades of the rows (paired by position)."""
    correct = errors = 0
    single = single_split = 0
    recalled = total_restarts = 0
    per_phrase: dict[str, list[int]] = {}
    per_category: dict[str, dict[str, int]] = {}
    first_x, first_y, all_x, all_y = [], [], [], []
    false_restarts, missed = [], []
    for row, grade in zip(rows, grades):
        cat = per_category.setdefault(row["category"], {"n": 0, "correct": 0, "errors": 0})
        cat["n"] += 1
        if not grade.ok:
            errors += 1
            cat["errors"] += 1
        n = grade.n_attempts if grade.ok else 0
        hit = grade.ok and n == row["attempts"]
        correct += hit
        cat["correct"] += hit
        if row["attempts"] == 1:
            single += 1
            if n > 1:
                single_split += 1
                false_restarts.append(
                    {
                        "id": row["id"],
                        "category": row["category"],
                        "split_at": [a.text[:60] for a in grade.attempts[1:]],
                    }
                )
        if grade.ok and grade.attempts:
            first_x.append(grade.attempts[0].score)
            first_y.append(float(row["scores"][0]))
            if hit:
                all_x += [a.score for a in grade.attempts]
                all_y += [float(s) for s in row["scores"]]
        if row["restarts"]:
            starts = attempt_starts(row["response"], grade) if grade.ok and n > 1 else []
            for r in row["restarts"]:
                if starts is None:  # attempt texts abridged beyond recognition: judge by the count
                    found = hit
                else:
                    found = any(r["start"] - 3 <= s <= r["start"] + len(r["phrase"]) + 3 for s in starts)
                total_restarts += 1
                recalled += found
                tally = per_phrase.setdefault(r["phrase"], [0, 0])
                tally[0] += found
                tally[1] += 1
                if not found:
                    missed.append({"id": row["id"], "phrase": r["phrase"]})
    graded = len(rows)
    return {
        "n": graded,
        "errors": errors,
        "attempt_accuracy": round(correct / graded, 4) if graded else None,
        "restart_recall": round(recalled / total_restarts, 4) if total_restarts else None,
        "n_restarts": total_restarts,
        "false_restart_rate": round(single_split / single, 4) if single else None,
        "n_single": single,
        "first_score_r": _pearson(first_x, first_y),
        "attempt_score_r": _pearson(all_x, all_y),
        "per_category": {
            k: {**v, "accuracy": round(v["correct"] / v["n"], 4)} for k, v in sorted(per_category.items())
        },
        "phrase_recall": {
            p: f"{a}/{b}" for p, (a, b) in sorted(per_phrase.items(), key=lambda kv: kv[1][0] / kv[1][1])
        },
        "missed_phrasings": sorted({m["phrase"] for m in missed}),
        "false_restarts": false_restarts,
    }


def validate(judge, rows: Sequence[dict[str, Any]] | None = None, *, progress: bool = False) -> dict[str, Any]:
    """Grade every row with `judge` (the steering label left blank) and score the grades against the labels."""
    from steerlab.judges.validation.build import SET_VERSION

    packaged = rows is None
    rows = load_set() if rows is None else list(rows)
    grades = judge.grade_many([GradeRequest(r["prompt"], r["response"], "") for r in rows], progress=progress)
    out = score_rows(rows, grades)
    return {"judge": judge.judge_id, "rubric": judge.rubric_version, "set": SET_VERSION if packaged else "given", **out}
