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
    from steerlab.cli import judge_commands

    judge_commands.register(app)
    from steerlab.cli import store_commands

    store_commands.register(app)
    from steerlab.cli import serve_commands

    serve_commands.register(app)
    from steerlab.cli import sae_commands

    sae_commands.register(app)
    from steerlab.cli import circuits_commands

    circuits_commands.register(app)
    from steerlab.cli import esr_commands

    esr_commands.register(app)
    from steerlab.cli import persona_commands

    persona_commands.register(app)
    from steerlab.cli import cache_commands

    cache_commands.register(app)


def _click_kinds() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(ClickException classes, Abort classes) of typer's vendored click and of click itself (typer >= 0.29 vendors it)."""
    exceptions, aborts = [], []
    try:
        from typer import exceptions as typer_exceptions
        from typer._click import exceptions as vendored

        exceptions.append(vendored.ClickException)
        aborts.append(typer_exceptions.Abort)
    except ImportError:
        pass
    try:
        import click

        exceptions.append(click.exceptions.ClickException)
        aborts.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(exceptions), tuple(aborts)


def _show_usage_for(argv: list[str]) -> None:
    """Click's usage line for the deepest command argv names (for usage errors raised before click had a context)."""
    try:
        cmd = typer.main.get_command(app)
        ctx = cmd.make_context("steerlab", [], resilient_parsing=True)
        for arg in argv:
            sub = getattr(cmd, "commands", {}).get(arg)
            if sub is None:
                break
            cmd, ctx = sub, sub.make_context(arg, [], parent=ctx, resilient_parsing=True)
        print(f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n", file=sys.stderr)
    except Exception:  # noqa: BLE001 - the usage line is a courtesy; the error line below still prints
        pass


def main(argv: list[str] | None = None) -> None:
    """Console entry point; argv defaults to sys.argv[1:]. Always ends in SystemExit with the exit code."""
    _register()
    click_errors, aborts = _click_kinds()
    try:
        result = app(args=argv, prog_name="steerlab", standalone_mode=False)
    except SteerlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (typer.Exit, SystemExit) as exc:
        code = exc.exit_code if isinstance(exc, typer.Exit) else exc.code
        sys.exit(code)
    except click_errors as exc:  # usage errors: click's usage line and one sentence, exit 2
        if getattr(exc, "ctx", False) is None:
            _show_usage_for(list(sys.argv[1:] if argv is None else argv))
        exc.show()
        usage = (
            type(exc).__name__
            in (
                "UsageError",
                "BadParameter",
                "MissingParameter",
                "NoSuchOption",
                "BadOptionUsage",
                "BadArgumentUsage",
                "NoArgsIsHelpError",
            )
            or getattr(exc, "exit_code", 1) == 2
        )
        sys.exit(2 if usage else getattr(exc, "exit_code", 1))
    except aborts:
        print("Aborted.", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)
