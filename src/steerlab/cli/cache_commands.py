"""`steerlab cache list | prune`: see and free steerlab's cache folder."""

from __future__ import annotations

import time
from typing import Optional

import typer

from steerlab.cli.show import console, out
from steerlab.errors import check_number

cache_app = typer.Typer(help="The user cache: converted models, default SAEs, ESR thresholds.", no_args_is_help=True)


def _mb(size: int) -> str:
    return f"{size / 2**20:,.1f} MB"


@cache_app.command("list")
def list_cmd() -> None:
    """Show every cache entry with its size and when it was last written."""
    from rich.table import Table

    from steerlab.models.cache import cache_entries
    from steerlab.models.gguf_cache import cache_root

    entries = cache_entries()
    table = Table(title=f"steerlab cache: {cache_root()}")
    for col in ("kind", "entry", "size", "written", "state"):
        table.add_column(col)
    for e in entries:
        state = (
            "leftover of a killed write"
            if e.kind == "leftover"
            else "ok"
            if e.intact
            else "damaged (rebuilt on next use)"
        )
        table.add_row(
            e.kind, e.path.name, _mb(e.size), time.strftime("%Y-%m-%d %H:%M", time.localtime(e.modified)), state
        )
    out.print(table)
    out.print(f"{len(entries)} entries, {_mb(sum(e.size for e in entries))} in all.")


@cache_app.command("prune")
def prune_cmd(
    everything: bool = typer.Option(False, "--all", help="Remove everything in the cache."),
    older_than: Optional[float] = typer.Option(
        None, "--older-than", help="Also remove entries not written for this many days."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only show what would be removed."),
) -> None:
    """Remove leftovers of killed writes and damaged conversions; more with --older-than DAYS or --all."""
    from steerlab.models.cache import cache_entries, prune

    if older_than is not None:
        check_number(older_than, "--older-than", 0, None)
    removed = prune(cache_entries(), everything=everything, older_than_days=older_than, dry_run=dry_run)
    for e in removed:
        console.print(f"{'would remove' if dry_run else 'removed'} {e.kind} {e.path} ({_mb(e.size)})")
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(removed)} entries, {verb} {_mb(sum(e.size for e in removed))}.")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
