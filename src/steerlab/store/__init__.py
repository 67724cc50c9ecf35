"""The run store: one SQLite file per run directory, resumable and safe for several writers."""

from steerlab.store.export import export, export_jsonl, export_parquet
from steerlab.store.runstore import RunStore
from steerlab.store.trial import Trial

__all__ = ["RunStore", "Trial", "export", "export_jsonl", "export_parquet"]

from steerlab.store.generation import generate_missing  # noqa: E402  (imports the engine)

__all__ += ["generate_missing"]
