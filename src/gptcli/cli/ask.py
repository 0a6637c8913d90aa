"""`gptcli ask`: one prompt, one answer, for terminals, pipes and scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from gptcli.cli.completion_values import session_names
from gptcli.cli.options import (
    ApiKeyEnvOpt,
    ApproveOpt,
    AttachOpt,
    BackendOpt,
    BaseUrlOpt,
    CtxOpt,
    DebugOpt,
    DraftMaxOpt,
    DraftOpt,
    FunctionsOpt,
    GpuLayersOpt,
    KvTypeOpt,
    MaxTokensOpt,
    MaxToolCallsOpt,
    MinPOpt,
    MmprojOpt,
    ModelOpt,
    NoCacheOpt,
    PdfPagesOpt,
    ProfileOpt,
    RepeatOpt,
    RoleOpt,
    SeedOpt,
    ShowThinkingOpt,
    SpeculateOpt,
    StopOpt,
    SystemOpt,
    TemperatureOpt,
    ThinkOpt,
    ThreadsOpt,
    ToolChoiceOpt,
    ToolOpt,
    TopKOpt,
    TopPOpt,
    VarOpt,
    YesOpt,
    setting_flags,
    tool_flags,
)
from gptcli.errors import ExitStatus


def ask(
    prompt: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(
            help="The question or instruction. Piped stdin is placed before it, separated by "
            "a '---' line; '-' means stdin only.",
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
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    stop: StopOpt = None,
    ctx: CtxOpt = None,
    threads: ThreadsOpt = None,
    gpu_layers: GpuLayersOpt = None,
    kv_type: KvTypeOpt = None,
    no_cache: NoCacheOpt = False,
    mmproj: MmprojOpt = None,
    pdf_pages: PdfPagesOpt = None,
    think: ThinkOpt = None,
    speculate: SpeculateOpt = None,
    draft: DraftOpt = None,
    draft_max: DraftMaxOpt = None,
    show_thinking: ShowThinkingOpt = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with text, usage and timings.")
    ] = False,
    plain: Annotated[
        bool, typer.Option("--plain", help="Print the exact text, no Markdown rendering.")
    ] = False,
    continue_last: Annotated[
        bool,
        typer.Option(
            "--continue",
            "-c",
            help="Continue the most recent session and save to it (even with save = false).",
        ),
    ] = False,
    session: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--session",
            help="Continue this session (created if missing) and save to it (even with "
            "save = false).",
            autocompletion=session_names,
        ),
    ] = None,
    on_overflow: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--on-overflow",
            help="When history and input do not fit the context: error (refuse, exit 4), "
            "truncate (drop the oldest exchanges) or summarize (replace them by a summary) "
            "[default: error].",
            show_default=False,
        ),
    ] = None,
    chunked: Annotated[
        bool,
        typer.Option(
            "--chunked",
            help="For input longer than the context: summarise it part by part, then apply "
            "the prompt to the whole (progress on stderr).",
        ),
    ] = False,
    files: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option("--file", "-f", help="Attach a text file, streamed (repeatable)."),
    ] = None,
    attach: AttachOpt = None,
    schema: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--schema",
            help="Constrain the answer to this JSON schema (a file or inline JSON); the answer "
            "is validated, exit 5 if it does not conform.",
        ),
    ] = None,
    grammar: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--grammar", help="Constrain the answer with a GBNF grammar (file or text)."),
    ] = None,
    profile: ProfileOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    role: RoleOpt = None,
    var: VarOpt = None,
    tool: ToolOpt = None,
    functions: FunctionsOpt = None,
    tool_choice: ToolChoiceOpt = None,
    max_tool_calls: MaxToolCallsOpt = None,
    yes: YesOpt = False,
    approve: ApproveOpt = None,
    jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl", help="Stream JSON events, one per line: start, delta..., usage, end."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Nothing on stderr but errors.")
    ] = False,
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Generate past the end of the answer (benchmarks)."),
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Answer one prompt and exit. Reads stdin when it is not a terminal."""
    from gptcli.answering.ask import AskRequest
    from gptcli.terminal.display import OutputMode
    from gptcli.terminal.oneshot import run_oneshot

    request = AskRequest(
        prompt=prompt,
        flags=setting_flags(locals()),
        session=session,
        continue_last=continue_last,
        on_overflow=on_overflow,
        chunked=chunked,
        files=tuple(files or ()),
        attachments=tuple(attach or ()),
        schema=schema,
        grammar=grammar,
        role=role,
        variables=tuple(var or ()),
        ignore_eos=ignore_eos,
        tools=tool_flags(locals()),
    )
    mode = OutputMode(
        json=json_output, jsonl=jsonl, plain=plain, show_thinking=show_thinking, quiet=quiet
    )
    status = run_oneshot(request, mode, debug)
    if status != ExitStatus.OK:
        raise typer.Exit(int(status))
