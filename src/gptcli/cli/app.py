"""The ``gptcli`` command line: parse, build settings, call the core, map errors to exit codes."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Annotated

import typer

from gptcli.cli.options import EXIT_STATUS_HELP
from gptcli.errors import ExitStatus, GptcliError, signal_status
from gptcli.terminal.interrupt import Stopped, exit_status, stop_gracefully
from gptcli.version import __version__

app = typer.Typer(
    name="gptcli",
    help="A local-first terminal chatbot: GGUF models run in-process through llama.cpp.",
    epilog=EXIT_STATUS_HELP,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            engine = version("llama-cpp-python")
        except PackageNotFoundError:
            engine = "not installed"
        typer.echo(f"gptcli {__version__} (llama-cpp-python {engine})")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Without a command: the REPL on a terminal, `ask` for pipes (see route)."""
    if ctx.invoked_subcommand != "ask":
        # `ask` keeps the start-up regime until its input is read, then treats every signal
        # as a request to stop the answer (terminal/oneshot.py). The others unwind like Ctrl-C.
        stop_gracefully()


def _register_subcommands() -> None:
    from gptcli.cli.ask import ask
    from gptcli.cli.batch import batch
    from gptcli.cli.cache import cache_app
    from gptcli.cli.chat import chat
    from gptcli.cli.cmd import cmd
    from gptcli.cli.completions import completions_app
    from gptcli.cli.doctor import doctor
    from gptcli.cli.models import models_app
    from gptcli.cli.roles import roles_app
    from gptcli.cli.sessions import sessions_app
    from gptcli.cli.tools import tools_app

    app.command(epilog=EXIT_STATUS_HELP)(ask)
    app.command(epilog=EXIT_STATUS_HELP)(chat)
    app.command(epilog=EXIT_STATUS_HELP)(batch)
    app.add_typer(models_app, name="models")
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(roles_app, name="roles")
    app.add_typer(tools_app, name="tools")
    app.add_typer(cache_app, name="cache")
    app.add_typer(completions_app, name="completions")
    app.command()(cmd)
    app.command(epilog=EXIT_STATUS_HELP)(doctor)


_register_subcommands()
COMMANDS = (
    "ask",
    "chat",
    "batch",
    "models",
    "sessions",
    "roles",
    "tools",
    "cmd",
    "cache",
    "completions",
    "doctor",
)


def route(argv: list[str], interactive: bool) -> list[str]:
    """Pick the command when none is named.

    ``gptcli`` alone or with options only starts the REPL on a terminal and acts
    like ``ask`` otherwise; ``gptcli "question"`` is ``gptcli ask "question"``.
    """
    if argv and argv[0] in (*COMMANDS, "-h", "--help", "--version"):
        return argv
    if not argv or (argv[0].startswith("-") and argv[0] != "-"):
        return ["chat" if interactive else "ask", *argv]
    return ["ask", *argv]


def _silence_stdout() -> None:
    """After stdout failed, point it at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _say(line: str) -> None:
    """One line on stderr, which may be a terminal that is gone: then nothing."""
    with suppress(OSError, ValueError):
        print(line, file=sys.stderr)


@contextmanager
def _error_boundary(debug: bool) -> Iterator[list[int]]:
    from gptcli.terminal.render import OutputClosed

    result = [0]
    try:
        yield result
    except GptcliError as exc:
        if debug:
            raise
        _say(f"gptcli: error: {exc.message}")
        result[0] = int(exc.exit_code)
    except (OutputClosed, BrokenPipeError):
        _silence_stdout()
        result[0] = int(ExitStatus.BROKEN_PIPE)
    except KeyboardInterrupt:
        _say("")
        result[0] = int(ExitStatus.INTERRUPTED)
    except Stopped as stopped:
        result[0] = signal_status(stopped.signum)
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            # The terminal is gone (hung up): say nothing; its SIGHUP sets the status.
            _silence_stdout()
            result[0] = int(ExitStatus.BROKEN_PIPE)
            return
        _say(f"gptcli: internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        result[0] = int(ExitStatus.ERROR)


def run(argv: list[str]) -> int:
    """Run the CLI with ``argv``; returns the exit status instead of exiting."""
    debug = "--debug" in argv
    if os.environ.get("_GPTCLI_COMPLETE"):
        # A completion request from the scripts in completions/: Typer answers it.
        from typer._completion_classes import completion_init

        completion_init()
    with _error_boundary(debug) as result:
        try:
            from gptcli.terminal.environment import stdin_is_interactive

            interactive = stdin_is_interactive(0) and stdin_is_interactive(1)
            outcome = typer.main.get_command(app).main(
                args=route(argv, interactive), prog_name="gptcli", standalone_mode=False
            )
            result[0] = outcome if isinstance(outcome, int) else 0
        except typer.Abort:
            raise KeyboardInterrupt from None
        except typer.TyperException as exc:  # usage errors, with their own message format
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                print(f"gptcli: error: {exc.format_message()}", file=sys.stderr)
            result[0] = exc.exit_code
        except typer.Exit as exc:
            result[0] = exc.exit_code
    return exit_status(result[0])


def _closed_standard_streams() -> int | None:
    """Started with ``>&-`` or ``2>&-``: Python then has no sys.stdout or sys.stderr.

    Without stdout nothing can be shown: one line on stderr, exit 1. Without
    stderr, messages go nowhere rather than into stdout, which scripts read.
    """
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - for the process
    if sys.stdout is None:
        sys.stderr.write("gptcli: error: standard output is closed; nothing could be shown\n")
        return int(ExitStatus.ERROR)
    return None


def main() -> None:
    closed = _closed_standard_streams()
    if closed is not None:
        sys.exit(closed)
    status = run(sys.argv[1:])
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()
    sys.exit(status)
