"""`gptcli cache …`: the prompt cache's entries (engine/promptcache.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from gptcli.cli.options import JsonOpt
from gptcli.wording import plural

cache_app = typer.Typer(
    help="List or clear the prompt cache: earlier runs' prompt prefixes, kept to answer faster.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _directory() -> Path:
    from gptcli.paths import app_paths

    return app_paths().cache_dir / "prompts"


@cache_app.command("list")
def list_entries(json_output: JsonOpt = False) -> None:
    """Entries, most recently used first: model, KV cache type, tokens, bytes, last used."""
    from gptcli.cli.options import print_table
    from gptcli.engine.kvcache import human_bytes
    from gptcli.store.promptcache import list_entries as entries_in
    from gptcli.terminal.render import sanitize

    entries = entries_in(_directory())
    if json_output:
        rows = [
            {
                "entry": e.name.removesuffix(".kv"),
                "model": e.model,
                "kv_type": e.kv_type,
                "tokens": e.tokens,
                "bytes": e.size,
                "last_used": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e.last_used)),
            }
            for e in entries
        ]
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    print_table(
        ["entry", "model", "kv", "tokens", "bytes", "last used"],
        [
            [
                e.short_id,
                sanitize(e.model),
                sanitize(e.kv_type),
                f"{e.tokens:,}",
                human_bytes(e.size),
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.last_used)),
            ]
            for e in entries
        ],
    )
    total = sum(e.size for e in entries)
    count = plural(len(entries), "entry", "entries")
    typer.echo(f"{count}, {human_bytes(total)} in {_directory()}", err=True)


@cache_app.command("clear")
def clear(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Say nothing.")] = False,
) -> None:
    """Delete every entry of the prompt cache."""
    from gptcli.engine.kvcache import human_bytes
    from gptcli.store.promptcache import clear as clear_directory

    count, size = clear_directory(_directory())
    if not quiet:
        typer.echo(f"removed {plural(count, 'entry', 'entries')} ({human_bytes(size)})", err=True)
