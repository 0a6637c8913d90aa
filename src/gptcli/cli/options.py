"""What several commands share: options and help texts declared once, and the table printer."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from gptcli.cli.completion_values import model_names, role_names, tool_names

if TYPE_CHECKING:
    from gptcli.answering.tools import ToolFlags

EXIT_STATUS_HELP = (
    "Exit status: 0 ok; 1 error; 2 usage error or unusable input; 3 model not found or "
    "unusable; 4 input does not fit the context window; 5 the answer does not match --schema; "
    "6 a model server could not be reached or answered with an error; 129 the terminal was "
    "closed (SIGHUP); 130 interrupted (Ctrl-C); 141 stdout closed by its reader (e.g. | head); "
    "143 terminated (SIGTERM)."
)

ModelOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional at runtime on 3.10
    typer.Option(
        "--model",
        "-m",
        help="Model alias, path to a .gguf file, or owner/repo[:QUANT] [env: GPTCLI_MODEL].",
        autocompletion=model_names,
    ),
]
SystemOpt = Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")]  # noqa: UP045
TemperatureOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--temperature", "-t", help="Sampling temperature (0 = always the likeliest)."),
]
TopPOpt = Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling mass.")]  # noqa: UP045
TopKOpt = Annotated[Optional[int], typer.Option("--top-k", help="Sample among the K likeliest.")]  # noqa: UP045
MinPOpt = Annotated[Optional[float], typer.Option("--min-p", help="Drop tokens below this share.")]  # noqa: UP045
RepeatOpt = Annotated[
    Optional[float],  # noqa: UP045
    typer.Option("--repeat-penalty", help="Penalty for repeating recent tokens (1 = off)."),
]
MaxTokensOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--max-tokens", "-n", help="Stop the answer after this many tokens."),
]
SeedOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--seed", help="Random seed; the same seed and options give the same text."),
]
StopOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--stop", help="Stop the answer at this text (repeatable)."),
]
CtxOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option("--ctx", help="Context window in tokens [default: model's, at most 4096]."),
]
ThreadsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--threads", help="CPU threads [default: physical cores not kept busy by others]."
    ),
]
MmprojOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--mmproj",
        help="Multimodal projector for images and audio [default: mmproj*.gguf beside the model].",
        show_default=False,
    ),
]
GpuLayersOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--gpu-layers",
        help="Layers to offload to the GPU: 'auto' (all layers when llama.cpp was built with "
        "CUDA or Metal, else none), 'all' (or -1), or a number; 0 keeps the model on the CPU "
        "[default: auto].",
        show_default=False,
    ),
]
KvTypeOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--kv-type",
        help="The KV cache's element type: f16, q8_0 (about half the memory), q4_0 (about a "
        "quarter) or f32 [default: f16].",
        show_default=False,
    ),
]
NoCacheOpt = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Neither reuse nor store prompt prefixes in the prompt cache (config prompt_cache).",
    ),
]
ProfileOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--profile", "-p", help="Use a [profiles.NAME] table of the config file."),
]
BackendOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--backend", help="local (llama.cpp in this process) or openai (a server)."),
]
BaseUrlOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--base-url", help="An OpenAI-compatible server, e.g. http://host:8080/v1."),
]
ApiKeyEnvOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option("--api-key-env", help="Read the server's API key from this variable."),
]
RoleOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--role",
        "-r",
        help="Use a role: its system prompt and default options.",
        autocompletion=role_names,
    ),
]
VarOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--var", help="Fill a {placeholder} of the role: KEY=VALUE (repeatable)."),
]
ThinkOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--think",
        help="A reasoning model's thinking: on, off, or auto (the model's default) "
        "[default: auto].",
        show_default=False,
    ),
]
SpeculateOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--speculate",
        help="Draft tokens and verify them in one batch: auto (the draft model if one is "
        "given, else n-grams where they pay), ngram (wherever the prompt or answer has a "
        "match), draft (the draft model) or off [default: auto].",
        show_default=False,
    ),
]
DraftOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--draft",
        help="A small model with the same vocabulary that drafts tokens for the model to "
        "verify (alias, path or owner/repo[:QUANT], as for --model).",
        autocompletion=model_names,
    ),
]
DraftMaxOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--draft-max",
        help="The most tokens the draft model drafts at a time [default: 16].",
        show_default=False,
    ),
]
ShowThinkingOpt = Annotated[
    bool,
    typer.Option(
        "--show-thinking",
        help="Show the thinking in full (on stderr when stdout is not a terminal).",
    ),
]
ToolOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--tool",
        "-T",
        help="Let the model call a tool (repeatable): time, calc, read_file, list_dir, shell, "
        "mcp:SERVER or mcp:SERVER/TOOL (see gptcli tools list).",
        autocompletion=tool_names,
    ),
]
FunctionsOpt = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--functions",
        help="A Python file whose typed, documented functions become tools (repeatable).",
        dir_okay=False,
    ),
]
ToolChoiceOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--tool-choice",
        help="auto (the model decides), required (it must call a tool first), none, or a "
        "tool's name [default: auto].",
        show_default=False,
    ),
]
MaxToolCallsOpt = Annotated[
    Optional[int],  # noqa: UP045
    typer.Option(
        "--max-tool-calls",
        help="Rounds of tool calls per answer; the last round must answer [default: 8].",
        show_default=False,
    ),
]
YesOpt = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Run tools that may change things without asking."),
]
ApproveOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--approve", help="Run this tool without asking (repeatable)."),
]
AttachOpt = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--attach",
        "-a",
        help="Attach a file, folder or http(s) URL, or '-' for stdin (repeatable): text, "
        "PDF (text per page), a folder's text files (.gitignore respected); the kind is "
        "read from the content.",
        show_default=False,
    ),
]
PdfPagesOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--pdf-pages",
        help="How an attached PDF reaches a model that sees: text, images (each page drawn), "
        "both, or auto (the text, plus an image of each page with little text: a scan, a "
        "chart) [default: auto].",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
DebugOpt = Annotated[
    bool, typer.Option("--debug", help="Show llama.cpp's log and tracebacks on errors.")
]


def setting_flags(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The command-line layer of the settings (None = not given), picked from a command's
    arguments (``ask`` and ``chat`` pass their ``locals()``)."""
    from gptcli.config import ENGINE_KEYS, SAMPLING_KEYS  # not at import: --help stays fast

    names = ("model", "system", *SAMPLING_KEYS, *ENGINE_KEYS, "profile", "backend", "pdf_pages")
    given = {name: arguments.get(name) for name in (*names, "base_url", "api_key_env")}
    stop = given.get("stop")
    return {
        **given,
        "stop": tuple(stop) if stop else None,
        "backend": given.get("backend") or ("openai" if given.get("base_url") else None),
        "prompt_cache": False if arguments.get("no_cache") else None,
    }


def tool_flags(arguments: Mapping[str, Any]) -> ToolFlags:
    """The tool options of a command (``ask`` and ``chat`` pass their ``locals()``)."""
    from gptcli.answering.tools import ToolFlags

    return ToolFlags(
        names=tuple(arguments.get("tool") or ()),
        functions=tuple(arguments.get("functions") or ()),
        choice=arguments.get("tool_choice"),
        max_calls=arguments.get("max_tool_calls"),
        yes=bool(arguments.get("yes")),
        approve=tuple(arguments.get("approve") or ()),
    )


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    if not sys.stdout.isatty():
        print_plain_table(columns, rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, box=None, pad_edge=False, highlight=False, show_header=any(columns))
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def print_plain_table(columns: list[str], rows: list[list[str]]) -> None:
    """The table Rich draws into a pipe, without its cost (seconds for thousands of rows)."""
    from rich.cells import cell_len as rich_cell_len

    def cell_len(text: str) -> int:
        return len(text) if text.isascii() else rich_cell_len(text)

    rows = [[" ".join(cell.split("\n")).replace("\t", " ") for cell in row] for row in rows]
    widths = [cell_len(c) for c in columns]
    for row in rows:
        widths = [max(w, cell_len(cell)) for w, cell in zip(widths, row, strict=True)]
    header = [columns] if any(columns) else []  # a table of names and values has none
    lines = [
        "  ".join(
            cell + " " * (w - cell_len(cell)) for w, cell in zip(widths, row, strict=True)
        ).rstrip()
        for row in [*header, *rows]
    ]
    sys.stdout.write("".join(line + "\n" for line in lines))
