"""`gptcli batch`: many prompts answered together, one JSON line per answer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gptcli.cli.options import (
    ApiKeyEnvOpt,
    BackendOpt,
    BaseUrlOpt,
    CtxOpt,
    DebugOpt,
    DraftMaxOpt,
    DraftOpt,
    GpuLayersOpt,
    KvTypeOpt,
    MaxTokensOpt,
    MinPOpt,
    MmprojOpt,
    ModelOpt,
    NoCacheOpt,
    PdfPagesOpt,
    ProfileOpt,
    RepeatOpt,
    RoleOpt,
    SeedOpt,
    SpeculateOpt,
    StopOpt,
    SystemOpt,
    TemperatureOpt,
    ThreadsOpt,
    TopKOpt,
    TopPOpt,
    setting_flags,
)
from gptcli.errors import ExitStatus


def batch(
    source: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Argument(
            help="JSONL input, one {\"prompt\": ...} object per line ('-' or none: stdin).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Write the results to this file, not stdout."),
    ] = None,
    lines: Annotated[
        bool,
        typer.Option("--lines", help="Plain text input: each non-empty line is a prompt."),
    ] = False,
    ordered: Annotated[
        bool,
        typer.Option("--ordered", help="Write the results in input order, not as they finish."),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="With -o: skip the ids FILE already has, append the rest."),
    ] = False,
    parallel: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--parallel",
            help="Answers decoded together [default: from the cores, the context and the "
            "memory; 8 requests with --backend openai].",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    temperature: TemperatureOpt = None,
    top_p: TopPOpt = None,
    top_k: TopKOpt = None,
    min_p: MinPOpt = None,
    repeat_penalty: RepeatOpt = None,
    speculate: SpeculateOpt = None,
    draft: DraftOpt = None,
    draft_max: DraftMaxOpt = None,
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    schema: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--schema",
            help="Constrain every answer to this JSON schema (a file or inline JSON); an answer "
            "that does not conform gets an error record.",
        ),
    ] = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = None,
    kv_type: KvTypeOpt = None,
    no_cache: NoCacheOpt = False,
    mmproj: MmprojOpt = None,
    pdf_pages: PdfPagesOpt = None,
    profile: ProfileOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    role: RoleOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar; nothing on stderr but errors.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Answer many prompts in one process: JSONL in, one JSON line per answer out.

    Input lines are objects with "prompt" and optionally "id", "system", "schema" and any
    sampling option ("temperature", "max_tokens", "seed", "stop", ...), which override the
    options for that item; other fields are named on stderr. Each output line
    has "id", "text", "finish_reason", "usage" and "timings", or "error". Exit status 0
    when every item succeeded, 1 when any failed.
    """
    from gptcli.answering.batch import BatchRequest
    from gptcli.terminal.batch import BatchCommand, run_batch_command

    command = BatchCommand(
        request=BatchRequest(
            flags=setting_flags(locals()), parallel=parallel, schema=schema, role=role
        ),
        source=source,
        output=output,
        lines=lines,
        ordered=ordered,
        resume=resume,
        quiet=quiet,
        debug=debug,
    )
    status = run_batch_command(command)
    if status != ExitStatus.OK:
        raise typer.Exit(int(status))
