"""`gptcli sessions …`: Typer commands only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gptcli.cli.completion_values import session_names
from gptcli.errors import UsageError

if TYPE_CHECKING:
    from gptcli.store.sessions import SessionStore

sessions_app = typer.Typer(
    help="List, show, export, rename and remove saved conversations.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
NameArg = Annotated[
    str,
    typer.Argument(help="Session name (see gptcli sessions list).", autocompletion=session_names),
]


def _store() -> SessionStore:
    from gptcli.paths import app_paths
    from gptcli.store.sessions import SessionStore

    return SessionStore(
        app_paths().data_dir,
        note=lambda line: typer.echo(line, err=True),
        warn=lambda line: typer.echo(f"gptcli: warning: {line}", err=True),
    )


@sessions_app.command("list")
def list_sessions(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Saved sessions, most recently used first."""
    from gptcli.cli.options import print_table
    from gptcli.terminal.render import sanitize

    store = _store()
    found = store.list()
    if json_output:
        rows = [
            {
                "name": s.name,
                "title": s.title,
                "model": s.model,
                "turns": s.turns,
                "updated": s.updated,
            }
            for s in found
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    print_table(
        ["name", "title", "model", "turns", "last used"],
        [
            [s.name, sanitize(s.title), s.model, str(s.turns), s.updated[:19].replace("T", " ")]
            for s in found
        ],
    )


@sessions_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help='Words that must all occur; "a phrase" in quotes.')],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find sessions by what was said in them (titles and messages), best match first."""
    from gptcli.store.index import MARK_END, MARK_START

    hits = _store().search(text, limit)
    if json_output:
        rows = [
            {
                "name": h.name,
                "title": h.title,
                "updated": h.updated,
                "snippet": " ".join(
                    h.snippet.replace(MARK_START, "").replace(MARK_END, "").split()
                ),
                "rank": round(h.rank, 3),
            }
            for h in hits
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    if not hits:
        typer.echo(f"no session mentions {text}", err=True)
        return
    from gptcli.terminal.render import hit_line

    width = max(len(h.name) for h in hits)
    if not sys.stdout.isatty():
        sys.stdout.write("".join(hit_line(h.name, h.snippet, width).plain + "\n" for h in hits))
        return
    from rich.console import Console

    console = Console(highlight=False)
    for hit in hits:
        console.print(hit_line(hit.name, hit.snippet, width), soft_wrap=True)


@sessions_app.command("show")
def show(name: NameArg) -> None:
    """The conversation, rendered (plain text into a pipe)."""
    from gptcli.store.transcript import to_markdown
    from gptcli.terminal.render import MarkdownRenderer, PlainRenderer, Renderer

    store = _store()
    text = to_markdown(store.load(name))
    renderer: Renderer
    if sys.stdout.isatty():
        from rich.console import Console

        renderer = MarkdownRenderer(Console())
    else:
        renderer = PlainRenderer(sys.stdout)
    renderer.feed(text)
    renderer.finish()


@sessions_app.command("export")
def export(
    name: NameArg,
    format: Annotated[str, typer.Option("--format", "-f", help="md or json.")] = "md",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
) -> None:
    """Export a session as Markdown or JSON, to stdout or a file."""
    from gptcli.paths import write_output_file
    from gptcli.store.transcript import to_json, to_markdown

    if format not in ("md", "json"):
        raise UsageError("--format must be md or json")
    store = _store()
    session = store.load(name)
    text = to_markdown(session) if format == "md" else to_json(session)
    if output is None:
        sys.stdout.write(text)
    else:
        write_output_file(output, text.encode("utf-8"))


@sessions_app.command("rm")
def remove(name: NameArg) -> None:
    """Delete a session (and its saved state)."""

    store = _store()
    store.remove(name)
    typer.echo(f"removed {name}")


@sessions_app.command("rename")
def rename(old: NameArg, new: Annotated[str, typer.Argument(help="The new name.")]) -> None:
    """Give a session another name."""

    store = _store()
    store.rename(old, new)
    typer.echo(f"{old} -> {new}")
