"""`steerlab store ...`: inspect a run store and export it to JSONL or Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

store_app = typer.Typer(help="Inspect and export run stores (one SQLite file per run directory).", no_args_is_help=True)


@store_app.command("show")
def show_cmd(run_dir: Path = typer.Argument(..., help="A run directory holding run.sqlite.")) -> None:
    """Print a run's counts, its judges and its config."""
    from steerlab.store import RunStore

    with RunStore(run_dir, create=False) as store:
        typer.echo(
            json.dumps(
                {"counts": store.counts(), "judges": [j for j, _ in store.judges()], "config": store.config}, indent=2
            )
        )


@store_app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory holding run.sqlite."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl | parquet"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output file (default: run.<format> in the run dir)."),
) -> None:
    """Export one row per trial, with its generation and all its grades."""
    from steerlab.store import RunStore, export

    with RunStore(run_dir, create=False) as store:
        path, n = export(store, fmt, out)
    typer.echo(f"wrote {n} rows to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
