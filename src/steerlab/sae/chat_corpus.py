"""The model's own chat answers as SAE training text: generated offline, cached as JSONL, resumable.

Each instruction of the packaged set (`steerlab.data.instructions`) is answered greedily and/or
sampled (seeded per row, so a row's text does not depend on its batch). Rows are appended to a JSONL
file one batch at a time; a rerun skips every (instruction, mode) already there, and a torn last line
(a killed run) is ignored. The file's digest pins the corpus in the SAE's recipe record.
The generator is passed in (`generate_fn`, e.g. `steerlab.engine.generate.generate`): the engine sits
above the SAE layer, so this module never imports it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

from steerlab.data.corpus import Document
from steerlab.errors import SteerlabError
from steerlab.models.loading import Model

MODES = ("greedy", "sampled")


def _row_seed(instruction: str, seed: int) -> int:
    return (int(hashlib.sha256(instruction.encode()).hexdigest()[:8], 16) + seed) % (2**31)


def read_answers(path: Path) -> list[dict]:
    """The complete rows of an answers file (a torn final line from a killed run is skipped)."""
    rows: list[dict] = []
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and {"instruction", "mode", "answer"} <= set(row):
            rows.append(row)
    return rows


def _drop_torn_tail(path: Path) -> None:
    """Cut a killed run's unfinished last line, so the next append starts on a line of its own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def generate_answers(
    model: Model,
    instructions: Sequence[str],
    path: Path,
    *,
    generate_fn: Callable,
    modes: Sequence[str] = MODES,
    max_new_tokens: int = 160,
    temperature: float = 0.8,
    seed: int = 0,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Answer every (instruction, mode) missing from `path`, appending one batch at a time; returns all rows.

    Args:
        model: the model whose own answers are wanted.
        instructions: the requests (user turns).
        path: the JSONL cache; rows already there are kept and skipped.
        generate_fn: the batched generator, called as generate_fn(model, prompts, max_new_tokens=...,
            temperature=..., seed=[...], batch_size=...) (e.g. steerlab.engine.generate.generate).
        modes: "greedy" and/or "sampled" (temperature, per-row seed derived from the instruction).
        progress: called with (done, total) after every batch.

    Returns:
        The rows for the requested (instruction, mode) pairs, in request order.
    """
    for mode in modes:
        if mode not in MODES:
            raise SteerlabError(f"Unknown answer mode '{mode}'; choose from: {', '.join(MODES)}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(path)
    have = {(r["instruction"], r["mode"]): r for r in read_answers(path)}
    wanted = [(p, m) for p in instructions for m in modes]
    todo = [w for w in wanted if w not in have]
    done = len(wanted) - len(todo)
    for mode in modes:
        rows = [p for p, m in todo if m == mode]
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            temp = 0.0 if mode == "greedy" else temperature
            gens = generate_fn(
                model,
                batch,
                max_new_tokens=max_new_tokens,
                temperature=temp,
                seed=[_row_seed(p, seed) for p in batch],
                batch_size=batch_size,
            )
            new = [
                {
                    "instruction": p,
                    "mode": mode,
                    "seed": _row_seed(p, seed) if mode == "sampled" else None,
                    "max_new_tokens": max_new_tokens,
                    "temperature": temp,
                    "answer": g.text,
                }
                for p, g in zip(batch, gens)
            ]
            with path.open("a", encoding="utf-8") as handle:  # one write per batch; a torn line is skipped on read
                handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
            for r in new:
                have[(r["instruction"], r["mode"])] = r
            done += len(batch)
            if progress:
                progress(done, len(wanted))
    return [have[w] for w in wanted]


def answer_documents(rows: Sequence[dict]) -> list[Document]:
    """Chat documents [user, assistant] from answer rows (empty answers dropped)."""
    return [
        [{"role": "user", "content": r["instruction"]}, {"role": "assistant", "content": r["answer"]}]
        for r in rows
        if r["answer"].strip()
    ]


def rows_digest(rows: Sequence[dict]) -> str:
    """A content digest of answer rows (order-independent), recorded in the SAE's recipe."""
    lines = sorted(json.dumps([r["instruction"], r["mode"], r["answer"]], ensure_ascii=False) for r in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
