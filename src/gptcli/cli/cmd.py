"""`gptcli cmd`: suggest one shell command, run it only on an explicit choice."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import Annotated, Optional

import typer

from gptcli.cli.completion_values import model_names
from gptcli.errors import UsageError


def cmd(
    request: Annotated[str, typer.Argument(help="What the command should do, in words.")],
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--model", "-m", help="Model alias or path.", autocompletion=model_names),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Suggest one shell command; on a terminal: Execute, Edit, Describe or Abort.

    Nothing runs without your explicit choice; without a terminal the command is
    only printed. Executing runs exactly the shown text in your $SHELL and exits
    with its status.
    """
    from gptcli.conversation.shellcmd import detect_shell, os_description

    if not request.strip():
        raise UsageError("the request is empty: say what the command should do")
    shell, shell_path = detect_shell()
    command = _suggest(request, model, shell, os_description(), debug)
    if not command:
        raise UsageError("the model gave no command; try rephrasing the request")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive:
        typer.echo(command)
        return
    status = _menu(command, shell_path, model, debug)
    if status:
        raise typer.Exit(status)


def _suggest(request: str, model: str | None, shell: str, system: str, debug: bool) -> str:
    from gptcli.config import load_settings
    from gptcli.conversation.context import complete
    from gptcli.conversation.roles import role_layer
    from gptcli.conversation.shellcmd import clean_command
    from gptcli.engine.base import Cancellation, Message
    from gptcli.models.loader import open_backend
    from gptcli.paths import app_paths
    from gptcli.terminal.interrupt import signals_cancel

    paths = app_paths()
    role = role_layer(paths.config_dir, "shell", [f"shell={shell}", f"os={system}"])
    settings = load_settings(paths.config_file, {"model": model}, role)
    cancel = Cancellation()
    with signals_cancel(cancel):
        backend, _ = open_backend(settings, paths, cancel, debug)
        try:
            messages = [Message("system", settings.system or ""), Message("user", request)]
            answer = complete(backend, messages, settings.sampling, cancel)
        finally:
            backend.close()
    return clean_command(answer)


def _menu(command: str, shell_path: str, model: str | None, debug: bool) -> int:
    from prompt_toolkit import prompt
    from rich.console import Console
    from rich.text import Text

    from gptcli.conversation.shellcmd import warnings_for
    from gptcli.terminal.render import sanitize

    console = Console(highlight=False)
    while True:
        console.print(Text("  " + sanitize(command), style="bold cyan"))
        for warning in warnings_for(command):
            console.print(Text(f"  warning: this command {warning}", style="bold red"))
        try:
            choice = prompt("[e]xecute, e[d]it, de[s]cribe, [a]bort? ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            choice = "a"
        if choice in ("e", "execute", "x"):
            done = subprocess.run([shell_path, "-c", command], check=False)
            return done.returncode if done.returncode >= 0 else 128 - done.returncode
        if choice in ("d", "edit"):
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                command = prompt("edit: ", default=command).strip() or command
            continue
        if choice in ("s", "describe"):
            console.print(Text(sanitize(_describe(command, model, debug)), style="dim"))
            continue
        console.print(Text("aborted; nothing was run", style="dim"))
        return 0


def _describe(command: str, model: str | None, debug: bool) -> str:
    from gptcli.config import SamplingOptions, load_settings
    from gptcli.conversation.context import complete
    from gptcli.engine.base import Cancellation, Message
    from gptcli.models.loader import open_backend
    from gptcli.paths import app_paths

    paths = app_paths()
    settings = load_settings(paths.config_file, {"model": model})
    backend, _ = open_backend(settings, paths, Cancellation(), debug)
    try:
        question = f"Explain briefly what this shell command does:\n\n{command}"
        options = SamplingOptions(temperature=0.2, max_tokens=200)
        return complete(backend, [Message("user", question)], options, Cancellation())
    finally:
        backend.close()
