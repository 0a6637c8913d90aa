"""`gptcli cmd`: suggest one shell command, run it only on an explicit choice."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gptcli.cli.completion_values import model_names
from gptcli.cli.options import AttachOpt, MmprojOpt, PdfPagesOpt

if TYPE_CHECKING:
    from gptcli.answering.environment import Environment


def cmd(
    request: Annotated[str, typer.Argument(help="What the command should do, in words.")],
    model: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--model", "-m", help="Model alias or path.", autocompletion=model_names),
    ] = None,
    attach: AttachOpt = None,
    mmproj: MmprojOpt = None,
    pdf_pages: PdfPagesOpt = None,
    debug: Annotated[bool, typer.Option("--debug")] = False,
) -> None:
    """Suggest one shell command; on a terminal: Execute, Edit, Describe or Abort.

    Nothing runs without your explicit choice; without a terminal the command is
    only printed. Executing runs exactly the shown text in your $SHELL and exits
    with its status.
    """
    from gptcli.answering.shell import suggest_command
    from gptcli.conversation.shellcmd import detect_shell
    from gptcli.terminal.environment import terminal_environment

    env = terminal_environment(debug=debug)
    flags = {"model": model, "mmproj": mmproj, "pdf_pages": pdf_pages}
    command = suggest_command(request, flags, env, tuple(attach or ()))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if not interactive:
        typer.echo(command)
        return
    status = _menu(command, detect_shell()[1], model, env)
    if status:
        raise typer.Exit(status)


def _menu(command: str, shell_path: str, model: str | None, env: Environment) -> int:
    from prompt_toolkit import prompt
    from rich.console import Console
    from rich.text import Text

    from gptcli.answering.shell import describe_command
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
            console.print(Text(sanitize(describe_command(command, model, env)), style="dim"))
            continue
        console.print(Text("aborted; nothing was run", style="dim"))
        return 0
