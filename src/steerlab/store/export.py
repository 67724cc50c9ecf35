"""Export a run store for pandas users: JSONL (always) and Parquet (when pyarrow is installed)."""

from __future__ import annotations

import json
from pathlib import Path

from steerlab.errors import SteerlabError
from steerlab.store.runstore import RunStore

FORMATS = ("jsonl", "parquet")


def export_jsonl(store: RunStore, path: str | Path) -> int:
    """One JSON object per trial (generation and grades nested); returns the row count."""
    from steerlab.paths import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in store.rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def export_parquet(store: RunStore, path: str | Path) -> int:
    """A Parquet table, one row per trial; grades are a list of structs, `extra` a JSON string."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SteerlabError(
            "Parquet export needs pyarrow; run `pip install pyarrow` or export with --format jsonl."
        ) from None
    rows = [{**r, "extra": json.dumps(r["extra"], ensure_ascii=False)} for r in store.rows()]
    grade_type = pa.struct(
        [
            ("judge_id", pa.string()),
            ("rubric_version", pa.string()),
            ("error", pa.string()),
            ("n_attempts", pa.int64()),
            ("first_score", pa.float64()),
            ("last_score", pa.float64()),
            ("attempts", pa.list_(pa.struct([("text", pa.string()), ("score", pa.float64())]))),
        ]
    )
    schema = pa.schema(
        [
            ("trial_key", pa.string()),
            ("condition", pa.string()),
            ("latent", pa.int64()),
            ("strength", pa.float64()),
            ("prompt", pa.string()),
            ("seed", pa.int64()),
            ("label", pa.string()),
            ("extra", pa.string()),
            ("response", pa.string()),
            ("finish_reason", pa.string()),
            ("n_tokens", pa.int64()),
            ("grades", pa.list_(grade_type)),
        ]
    )
    from steerlab.paths import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(tmp))
    return len(rows)


def export(store: RunStore, fmt: str, path: str | Path | None = None) -> tuple[Path, int]:
    """Export in a named format to path (default: beside the store); returns (path, rows)."""
    if fmt not in FORMATS:
        raise SteerlabError(f"Unknown export format '{fmt}'; choose one of: {', '.join(FORMATS)}.")
    out = Path(path) if path else store.run_dir / f"run.{fmt}"
    n = export_jsonl(store, out) if fmt == "jsonl" else export_parquet(store, out)
    return out, n
