"""`gptcli roles …`: list, show, add and remove roles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gptcli.cli.completion_values import role_names
from gptcli.errors import UsageError

roles_app = typer.Typer(
    help="List, show, add and remove roles (personas).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _config_dir() -> Path:
    from gptcli.paths import app_paths

    return app_paths().config_dir


@roles_app.command("list")
def list_roles() -> None:
    """Built-in and your own roles."""
    from gptcli.cli.options import print_table
    from gptcli.conversation.roles import load_roles

    roles = load_roles(_config_dir())
    rows = [
        [r.name, "built-in" if r.builtin else "yours", " ".join(r.placeholders), r.description]
        for r in roles.values()
    ]
    print_table(["role", "source", "needs --var", "description"], rows)


@roles_app.command("show")
def show_role(
    name: Annotated[str, typer.Argument(help="A role name.", autocompletion=role_names)],
) -> None:
    """A role's system prompt and options."""
    from gptcli.conversation.roles import get_role

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
    from gptcli.config import check_value
    from gptcli.conversation.roles import role_file_text, roles_dir
    from gptcli.models.registry import check_alias
    from gptcli.paths import write_private_file

    check_alias(name)
    path = roles_dir(_config_dir()) / f"{name}.toml"
    if path.exists() and not force:
        raise UsageError(f"role {name!r} exists ({path}); pass --force to replace it")
    options: dict[str, object] = {}
    try:
        if temperature is not None:
            options["temperature"] = check_value("temperature", temperature)
        if model is not None:
            options["model"] = check_value("model", model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    write_private_file(path, role_file_text(system, description, options).encode())
    typer.echo(f"saved role {name} in {path}")


@roles_app.command("rm")
def remove_role(
    name: Annotated[str, typer.Argument(help="One of your roles.", autocompletion=role_names)],
) -> None:
    """Delete one of your roles (built-ins cannot be removed)."""
    from gptcli.conversation.roles import roles_dir
    from gptcli.models.registry import check_alias

    check_alias(name)
    path = roles_dir(_config_dir()) / f"{name}.toml"
    if not path.exists():
        raise UsageError(f"no role of yours named {name!r}")
    path.unlink()
    typer.echo(f"removed role {name}")
