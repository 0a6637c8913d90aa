"""`gptcli roles …`, `gptcli cmd` and `gptcli completions …`: Typer commands only."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gptcli.completion_values import model_names, role_names
from gptcli.errors import UsageError

roles_app = typer.Typer(
    help="List, show, add and remove roles (personas).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
completions_app = typer.Typer(
    help="Shell completion scripts for bash, zsh and fish.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
SHELLS = ("bash", "zsh", "fish")


def _config_dir() -> Path:
    from gptcli.paths import app_paths

    return app_paths().config_dir


@roles_app.command("list")
def list_roles() -> None:
    """Built-in and your own roles."""
    from gptcli.cli_models import _table
    from gptcli.roles import load_roles

    roles = load_roles(_config_dir())
    rows = [
        [r.name, "built-in" if r.builtin else "yours", " ".join(r.placeholders), r.description]
        for r in roles.values()
    ]
    _table(["role", "source", "needs --var", "description"], rows)


@roles_app.command("show")
def show_role(
    name: Annotated[str, typer.Argument(help="A role name.", autocompletion=role_names)],
) -> None:
    """A role's system prompt and options."""
    from gptcli.roles import get_role

    role = get_role(_config_dir(), name)
    typer.echo(f"role: {role.name}{' (built-in)' if role.builtin else ''}")
    if role.description:
        typer.echo(f"description: {role.description}")
    for key, value in role.options.items():
        typer.echo(f"{key}: {value}")
    typer.echo(f"system: {role.system}")


@roles_app.command("add")
def add_role(
    name: Annotated[str, typer.Argument(help="The role's name.")],
    system: Annotated[str, typer.Option("--system", "-s", help="Its system prompt.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    temperature: Annotated[Optional[float], typer.Option("--temperature", "-t")] = None,  # noqa: UP045
    model: Annotated[Optional[str], typer.Option("--model", "-m")] = None,  # noqa: UP045
    force: Annotated[bool, typer.Option("--force", help="Replace a role of yours.")] = False,
) -> None:
    """Save a role as <config dir>/roles/NAME.toml."""
    from gptcli.atomic import write_private_file
    from gptcli.config import _check_value
    from gptcli.registry import check_alias
    from gptcli.roles import role_file_text, roles_dir

    check_alias(name)
    path = roles_dir(_config_dir()) / f"{name}.toml"
    if path.exists() and not force:
        raise UsageError(f"role {name!r} exists ({path}); pass --force to replace it")
    options: dict[str, object] = {}
    try:
        if temperature is not None:
            options["temperature"] = _check_value("temperature", temperature)
        if model is not None:
            options["model"] = _check_value("model", model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_private_file(path, role_file_text(system, description, options).encode())
    typer.echo(f"saved role {name} in {path}")


@roles_app.command("rm")
def remove_role(
    name: Annotated[str, typer.Argument(help="One of your roles.", autocompletion=role_names)],
) -> None:
    """Delete one of your roles (built-ins cannot be removed)."""
    from gptcli.registry import check_alias
    from gptcli.roles import roles_dir

    check_alias(name)
    path = roles_dir(_config_dir()) / f"{name}.toml"
    if not path.exists():
        raise UsageError(f"no role of yours named {name!r}")
    path.unlink()
    typer.echo(f"removed role {name}")


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
    from gptcli.shellcmd import detect_shell, os_description

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
    from gptcli.backends.base import Cancellation, Message
    from gptcli.backends.loader import open_backend
    from gptcli.config import load_settings
    from gptcli.context import complete
    from gptcli.interrupt import sigint_cancels
    from gptcli.paths import app_paths
    from gptcli.roles import role_layer
    from gptcli.shellcmd import clean_command

    paths = app_paths()
    role = role_layer(paths.config_dir, "shell", [f"shell={shell}", f"os={system}"])
    settings = load_settings(paths.config_file, {"model": model}, role)
    cancel = Cancellation()
    with sigint_cancels(cancel):
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

    from gptcli.render import sanitize
    from gptcli.shellcmd import warnings_for

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
    from gptcli.backends.base import Cancellation, Message
    from gptcli.backends.loader import open_backend
    from gptcli.config import SamplingOptions, load_settings
    from gptcli.context import complete
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


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    if shell not in SHELLS:
        raise UsageError(f"unsupported shell {shell!r}: use one of {', '.join(SHELLS)}")
    script = get_completion_script(prog_name="gptcli", complete_var="_GPTCLI_COMPLETE", shell=shell)
    return script.strip() + "\n"


@completions_app.command("show")
def show_completion(shell: Annotated[str, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the completion script (what completions/ holds)."""
    sys.stdout.write(completion_script(shell))


def _install_target(shell: str) -> Path:
    home = Path.home()
    if shell == "bash":
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
        return base / "bash-completion" / "completions" / "gptcli"
    if shell == "zsh":
        return home / ".zfunc" / "_gptcli"
    base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return base / "fish" / "completions" / "gptcli.fish"


@completions_app.command("install")
def install_completion(
    shell: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="bash, zsh or fish [default: from $SHELL]."),
    ] = None,
) -> None:
    """Put the completion script where the shell looks for it."""
    chosen = shell or Path(os.environ.get("SHELL", "bash")).name
    script = completion_script(chosen)
    target = _install_target(chosen)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(script)
    typer.echo(f"installed {chosen} completions in {target}")
    if chosen == "zsh":
        typer.echo("add to ~/.zshrc: fpath=(~/.zfunc $fpath); autoload -Uz compinit && compinit")
    if chosen == "bash":
        typer.echo("new bash sessions load it (bash-completion 2.x); or: source " + str(target))
