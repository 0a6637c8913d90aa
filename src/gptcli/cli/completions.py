"""`gptcli completions …`: shell completion scripts for bash, zsh and fish."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gptcli.errors import UsageError

completions_app = typer.Typer(
    help="Shell completion scripts for bash, zsh and fish.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
SHELLS = ("bash", "zsh", "fish")


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
