"""`gptcli chat`: the interactive chat on a terminal."""

from __future__ import annotations

import os
from dataclasses import replace
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
from gptcli.errors import UsageError


def chat(
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
    plain: Annotated[
        bool, typer.Option("--plain", help="Print answers as exact text, no Markdown.")
    ] = False,
    no_history: Annotated[
        bool,
        typer.Option(
            "--no-history", help="Keep no input history on disk [env: GPTCLI_NO_HISTORY=1]."
        ),
    ] = False,
    resume: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--resume", help="Resume the session with this name.", autocompletion=session_names
        ),
    ] = None,
    continue_last: Annotated[
        bool, typer.Option("--continue", "-c", help="Resume the most recent session.")
    ] = False,
    no_save: Annotated[
        bool, typer.Option("--no-save", help="Incognito: save nothing of this conversation.")
    ] = False,
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
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Generate past the end of answers (benchmarks)."),
    ] = False,
    attach: AttachOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Chat interactively (the default on a terminal). /help inside lists the commands."""
    from gptcli.answering.settings import build_settings
    from gptcli.paths import app_paths
    from gptcli.terminal.environment import stdin_is_interactive
    from gptcli.terminal.repl.app import run_repl
    from gptcli.terminal.repl.state import ReplOptions

    if not stdin_is_interactive(0) or not stdin_is_interactive(1):
        raise UsageError("chat needs a terminal; use gptcli ask for pipes and scripts")
    settings = build_settings(app_paths(), setting_flags(locals()), role, var or ())
    if ignore_eos:
        settings = replace(settings, sampling=replace(settings.sampling, ignore_eos=True))
    history = settings.history and not no_history and os.environ.get("GPTCLI_NO_HISTORY") != "1"
    options = ReplOptions(
        history=history and not no_save,
        save=settings.save and not no_save,
        resume=resume,
        continue_last=continue_last,
        plain=plain or bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb",
        vi_mode=settings.vi_mode,
        debug=debug,
        show_thinking=show_thinking,
        tools=tool_flags(locals()),
        attach=tuple(attach or ()),
    )
    status = run_repl(settings, options)
    if status:
        raise typer.Exit(status)
