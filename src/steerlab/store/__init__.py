"""The run store: one SQLite file per run directory, resumable and safe for several writers.

The store holds rows only; generating a run's missing trials lives above it (`steerlab.esr.batches`).
"""

from steerlab.store.export import export, export_jsonl, export_parquet
from steerlab.store.grades import Attempt, Grade
from steerlab.store.runstore import RunStore, differing_keys
from steerlab.store.trial import Trial

__all__ = ["Attempt", "Grade", "RunStore", "Trial", "differing_keys", "export", "export_jsonl", "export_parquet"]
