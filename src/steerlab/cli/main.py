"""Root typer app. Bad input (SteerlabError) prints one sentence and exits with code 2."""

from __future__ import annotations

import sys

import typer

from steerlab.errors import SteerlabError

app = typer.Typer(
    name="steerlab",
    help="Steer, measure, locate and repair safety mechanisms inside Hugging Face language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_registered = False


def _register() -> None:
    """Attach every command group (each lives in its own module); idempotent."""
    global _registered
    if _registered:
        return
    _registered = True
    from steerlab.cli import core_commands

    core_commands.register(app)
    from steerlab.cli import judge_commands; judge_commands.register(app)
    from steerlab.cli import store_commands; store_commands.register(app)
    from steerlab.cli import serve_commands; serve_commands.register(app)
    from steerlab.cli import sae_commands; sae_commands.register(app)
    from steerlab.cli import circuits_commands; circuits_commands.register(app)
    from steerlab.cli import esr_commands; esr_commands.register(app)
    from steerlab.cli import persona_commands; persona_commands.register(app)


def main() -> None:
    """Console entry point."""
    _register()
    try:
        result = app(standalone_mode=False)
    except SteerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2 if isinstance(exc, click.exceptions.UsageError) else exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        raise
    sys.exit(result if isinstance(result, int) else 0)
