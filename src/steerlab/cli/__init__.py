"""The `steerlab` command line: one typer app; each sub-command is a thin shell over a library function."""

from steerlab.cli.main import app, main

__all__ = ["app", "main"]
