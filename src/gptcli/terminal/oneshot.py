"""`gptcli ask`: one prompt in, one answer out, on a terminal or in a pipe."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from gptcli.config import SamplingOptions, Settings, load_settings
from gptcli.conversation.chat import Conversation, Reply
from gptcli.conversation.context import (
    ChunkedPrompt,
    FitReport,
    OverflowPolicy,
    PartProgress,
    check_policy,
    chunked_messages,
    fit_conversation,
    input_limit,
    read_within,
)
from gptcli.conversation.kvstate import restore_state, save_state
from gptcli.conversation.recorder import SessionRecorder, answer_facts, conversation_of
from gptcli.conversation.roles import role_layer
from gptcli.conversation.toolloop import (
    AnswerEvent,
    ToolResult,
    ToolUse,
    call_record,
    result_record,
)
from gptcli.engine.base import (
    Backend,
    Cancellation,
    Finished,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCalled,
)
from gptcli.errors import ExitStatus, SchemaMismatchError, UsageError
from gptcli.paths import AppPaths, app_paths
from gptcli.store.sessions import SessionError, SessionStore, check_name, new_session_name
from gptcli.terminal.inputs import (
    STDIN_ONLY,
    Attachment,
    compose_prompt,
    stdin_is_interactive,
)
from gptcli.terminal.interrupt import ending_signal, signals_cancel
from gptcli.terminal.render import GuardedStream, MarkdownRenderer, PlainRenderer, Renderer
from gptcli.terminal.thinking import (
    Forwarded,
    Ignored,
    LiveThinking,
    PlainThinking,
    ThinkingSink,
)
from gptcli.terminal.tools import (
    ConsoleTools,
    Hidden,
    StreamTools,
    ToolDisplay,
    ToolFlags,
    terminal_asker,
    tool_use,
)

READ_AHEAD = 1024 * 1024  # characters of input read before the model loads
DEFAULT_CHUNKED_TASK = "Summarise this text."


@dataclass(frozen=True)
class OneShot:
    """One `ask` invocation as parsed from the command line."""

    prompt: str | None
    flags: Mapping[str, Any]
    json_output: bool = False
    plain: bool = False
    debug: bool = False
    session: str | None = None
    continue_last: bool = False
    on_overflow: str | None = None
    chunked: bool = False
    files: tuple[Path, ...] = field(default_factory=tuple)
    schema: str | None = None
    grammar: str | None = None
    role: str | None = None
    variables: tuple[str, ...] = ()
    jsonl: bool = False
    quiet: bool = False
    ignore_eos: bool = False
    show_thinking: bool = False
    tools: ToolFlags = field(default_factory=ToolFlags)


_quiet: ContextVar[bool] = ContextVar("quiet", default=False)


def warn(message: str, kind: str = "note") -> None:
    """A note or warning on stderr (errors go through the CLI's error boundary instead)."""
    if _quiet.get():
        return
    sys.stderr.write(f"gptcli: {kind}: {message}\n")
    sys.stderr.flush()


def _gather_input(request: OneShot, cancel: Cancellation) -> tuple[str | None, Attachment]:
    """(instruction, attached text): the prompt argument, then files and piped stdin.

    The attachment is read ahead only a little here (enough for any input that fits a
    context, and to refuse binary input before the model loads); the rest is read as
    it is used, so a huge input never sits in memory whole.
    """
    prompt = None if request.prompt == STDIN_ONLY else request.prompt
    stdin = sys.stdin
    interactive = stdin is None or stdin.closed or stdin_is_interactive(0)
    attachment = Attachment(
        request.files,
        None if interactive else stdin.buffer,
        lambda message: warn(message, "warning"),
        cancel,
    )
    if interactive and prompt is None and not request.files:
        raise UsageError(
            "no prompt: give one as an argument, or pipe text on stdin (see gptcli ask --help)"
        )

    def hint() -> None:
        if stdin_is_interactive(2):
            warn("waiting for stdin to end (Ctrl-D); use </dev/null to send none")

    attachment.read_ahead(READ_AHEAD, hint if prompt is not None else None)
    return prompt, attachment


def _part_progress(attachment: Attachment) -> Callable[[PartProgress], None]:
    """Progress lines for --chunked: parts and, while the input is read, how far and when done."""
    started: list[float] = []

    def show(step: PartProgress) -> None:
        started[:] = started or [time.monotonic()]
        if step.of is not None or step.done <= 0 or not attachment.chars_read:
            warn(str(step))
            return
        done = step.done * attachment.bytes_read / attachment.chars_read
        total = attachment.total_bytes
        if total is None or done >= total:
            warn(f"{step} ({_size(done)} done)")
            return
        parts = max(step.number, round((step.number - 1) * total / done))
        left = (time.monotonic() - started[0]) * (total - done) / done
        warn(f"{step} of ~{parts} ({_size(done)} of {_size(total)}, {_duration(left)} left)")

    return show


def _size(count: float) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _renderer(stream: GuardedStream, plain: bool) -> Renderer:
    if (
        plain
        or not stream.isatty()
        or os.environ.get("NO_COLOR")
        or os.environ.get("TERM") == "dumb"
    ):
        return PlainRenderer(stream)
    from rich.console import Console

    return MarkdownRenderer(Console(file=stream, soft_wrap=False))  # type: ignore[arg-type]


def _json_result(
    sampling: SamplingOptions, backend: Backend, reply: Reply, fit: FitReport | None
) -> dict[str, Any]:
    finished = reply.finished
    assert finished is not None
    timings = finished.timings
    window = backend.details.context_size
    return {
        "text": reply.text,
        "thinking": reply.thinking,
        "model": backend.details.name,
        "finish_reason": finished.reason,
        "seed": finished.seed,
        "usage": {
            "prompt_tokens": finished.usage.prompt_tokens,
            "completion_tokens": finished.usage.completion_tokens,
            "total_tokens": finished.usage.total_tokens,
        },
        "context": {
            "window": window,
            "prompt_tokens": finished.usage.prompt_tokens,
            "room_for_answer": window - finished.usage.prompt_tokens,
            "dropped_messages": fit.dropped if fit else 0,
            "summarized_messages": fit.summarized if fit else 0,
        },
        "timings": {
            "time_to_first_token_s": round(timings.time_to_first_token, 4),
            "prompt_tokens_per_s": round(timings.prompt_tokens_per_second, 2),
            "tokens_per_s": round(finished.decode_tokens_per_second, 2),
            "prompt_s": round(timings.prompt_seconds, 4),
            "decode_s": round(timings.decode_seconds, 4),
            "cached_prompt_tokens": timings.cached_tokens,
        },
        "tool_calls": [
            {**call_record(r.call), "result": result_record(r)} for r in reply.tool_results
        ],
        "tool_rounds": reply.rounds,
        "options": {
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "max_tokens": sampling.max_tokens,
            "stop": list(sampling.stop),
            "constrained": sampling.grammar is not None,
        },
    }


def _open_session(
    request: OneShot, settings: Settings, paths: AppPaths
) -> tuple[Conversation, SessionRecorder | None]:
    """The conversation `ask` continues, and where to save it (only with -c or --session)."""
    if not (request.session or request.continue_last):
        return Conversation(system=settings.system), None
    store = SessionStore(paths.data_dir)
    name = request.session or store.most_recent() or new_session_name()
    check_name(name)
    session = None
    if store.exists(name):
        try:
            session = store.load(name)
        except SessionError as exc:
            warn(exc.message, "warning")
    recorder = SessionRecorder(store, name, lambda message: warn(message, "warning"))
    if session is None:
        if settings.system:
            recorder.system(settings.system)
        return Conversation(system=settings.system), recorder
    system = request.flags.get("system") or session.system or settings.system
    return conversation_of(session, system), recorder


def _constraints(request: OneShot) -> tuple[dict[str, Any] | None, str | None]:
    from gptcli.conversation.structured import load_grammar, load_schema, schema_grammar

    if request.schema and request.grammar:
        raise UsageError("--schema and --grammar cannot be combined")
    if request.schema:
        schema = load_schema(request.schema)
        return schema, schema_grammar(schema)
    if request.grammar:
        return None, load_grammar(request.grammar)
    return None, None


def run_oneshot(request: OneShot, out: IO[str] | None = None) -> ExitStatus:
    from gptcli.models.loader import open_backend

    _quiet.set(request.quiet)
    if request.jsonl and (request.json_output or request.schema or request.grammar):
        raise UsageError("--jsonl cannot be combined with --json, --schema or --grammar")
    paths = app_paths()
    roles = role_layer(paths.config_dir, request.role, list(request.variables))
    settings = load_settings(paths.config_file, request.flags, roles)
    policy = check_policy(request.on_overflow or settings.on_overflow or "error")
    if request.chunked and (request.session or request.continue_last):
        raise UsageError("--chunked cannot be combined with sessions (-c, --session)")
    if request.chunked and (request.tools.names or request.tools.functions):
        raise UsageError("--chunked cannot be combined with tools (-T, --functions)")
    schema, grammar = _constraints(request)
    sampling = replace(
        settings.sampling, grammar=grammar, schema=schema, ignore_eos=request.ignore_eos
    )
    # Until the input is read (a little ahead: the rest streams later) a signal ends the
    # process at once; from here on it asks the engine to stop at the next token.
    cancel = Cancellation()
    instruction, attachment = _gather_input(request, cancel)
    asker = terminal_asker(sys.stderr)
    # Tools first: a wrong name is reported before a model takes seconds to load.
    with signals_cancel(cancel), tool_use(request.tools, settings.tools, asker) as tools:
        backend, notices = open_backend(settings, paths, cancel, debug=request.debug)
        for notice in notices:
            warn(notice)
        try:
            status = _answer(
                request,
                _Turn(settings, paths, sampling, policy, schema, tools),
                backend,
                (instruction, attachment),
                cancel,
                out,
            )
        finally:
            backend.close()
    return ExitStatus.INTERRUPTED if cancel.cancelled else status


@dataclass(frozen=True)
class _Turn:
    settings: Settings
    paths: AppPaths
    sampling: SamplingOptions
    policy: OverflowPolicy
    schema: dict[str, Any] | None
    tools: ToolUse | None = None


def _answer(
    request: OneShot,
    turn: _Turn,
    backend: Backend,
    inputs: tuple[str | None, Attachment],
    cancel: Cancellation,
    out: IO[str] | None,
) -> ExitStatus:
    instruction, attachment = inputs
    sampling, paths = turn.sampling, turn.paths
    stream = GuardedStream(out or sys.stdout)
    conversation, recorder = _open_session(request, turn.settings, paths)
    if recorder is not None and conversation.messages:
        _restore_state(recorder, backend, paths, request.debug)
    reply = Reply()
    fit: FitReport | None = None
    chunked: ChunkedPrompt | None = None
    if request.chunked:
        progress = _part_progress(attachment)
        chunked = chunked_messages(
            attachment.blocks(),
            instruction or DEFAULT_CHUNKED_TASK,
            backend,
            sampling,
            cancel,
            progress if stdin_is_interactive(2) or request.debug else None,
        )
        events: Iterator[AnswerEvent] = backend.stream(chunked.messages, sampling, cancel)
    else:
        size = backend.details.context_size
        limit = input_limit(conversation, turn.policy, sampling, size)
        attached = read_within(attachment.blocks(), backend, limit, cancel)
        user_text = compose_prompt(instruction, attached or None)
        fit = fit_conversation(conversation, user_text, backend, turn.policy, sampling, cancel)
        if fit.notice():
            warn(str(fit.notice()))
        if recorder is not None:
            recorder.user(user_text)  # on disk before the answer starts
        events = conversation.send(user_text, backend, sampling, cancel, reply, turn.tools)
    held = sampling.grammar is not None
    try:
        _show(events, reply, request, stream, held, backend.details.name)
    finally:
        # Also after a failure mid-answer: the part received is kept, marked.
        if recorder is not None and (reply.text or reply.finished):
            facts = answer_facts(backend, paths.cache_dir)
            recorder.answer(
                reply.final_text,
                reply.finished,
                facts,
                sampling,
                thinking=reply.thinking,
                steps=reply.steps,
            )
    extra = {"chunked": _chunk_report(chunked)} if chunked is not None else {}
    status = _finish(request, reply, turn.schema, sampling, backend, fit, stream, extra)
    # The answer is out and flushed; the state is written for the session's next turn.
    hurried = cancel.cancelled or ending_signal() is not None
    _keep_state(recorder, backend, paths, request.debug, hurried)
    return status


def _restore_state(
    recorder: SessionRecorder, backend: Backend, paths: AppPaths, debug: bool
) -> None:
    start = time.perf_counter()
    restored = restore_state(recorder.store, recorder.name, backend, paths.cache_dir)
    if debug:
        took = time.perf_counter() - start
        warn(f"restored {restored} tokens of the session's state in {took * 1000:.0f} ms")


def _keep_state(
    recorder: SessionRecorder | None, backend: Backend, paths: AppPaths, debug: bool, hurried: bool
) -> None:
    """Write the session's KV snapshot; a disk that refuses costs the next turn, not this one."""
    try:
        written = save_state(recorder, backend, paths.cache_dir, hurried)
    except OSError as exc:
        warn(f"could not save the session's state ({exc.strerror}); the next turn is slower")
        return
    if debug and written is not None:
        warn(
            f"saved {written.tokens} tokens of the session's state, {written.size:,} bytes, "
            f"in {written.seconds * 1000:.0f} ms"
        )


class JsonLines:
    """A Renderer that writes one JSON event per line: start, delta..., usage, end."""

    def __init__(self, stream: GuardedStream, model: str) -> None:
        self._stream = stream
        self._emit({"type": "start", "model": model})

    def _emit(self, event: dict[str, Any]) -> None:
        self._stream.write(json.dumps(event, ensure_ascii=False) + "\n")
        self._stream.flush()

    def feed(self, text: str) -> None:
        self._emit({"type": "delta", "text": text})

    def feed_thinking(self, text: str) -> None:
        self._emit({"type": "thinking", "text": text})

    def called(self, call: ToolCall) -> None:
        self._emit({"type": "tool_call", **call_record(call)})

    def result(self, result: ToolResult) -> None:
        self._emit({"type": "tool_result", **result_record(result)})

    def finished(self, event: Finished) -> None:
        timings = event.timings
        self._emit(
            {
                "type": "usage",
                "prompt_tokens": event.usage.prompt_tokens,
                "completion_tokens": event.usage.completion_tokens,
                "time_to_first_token_s": round(timings.time_to_first_token, 4),
                "tokens_per_s": round(event.decode_tokens_per_second, 2),
            }
        )
        self._emit({"type": "end", "finish_reason": event.reason, "seed": event.seed})

    def finish(self) -> None:
        pass


def _show(
    events: Iterator[AnswerEvent],
    reply: Reply,
    request: OneShot,
    stream: GuardedStream,
    held: bool,
    model: str,
) -> None:
    """Stream the answer to the terminal or pipe (unless it must be validated or is JSON)."""
    renderer: Renderer | None = None
    if request.jsonl:
        renderer = JsonLines(stream, model)
    elif not (request.json_output or held):
        renderer = _renderer(stream, request.plain)
    thinking = _thinking_sink(request, renderer)
    tools = _tool_display(request, renderer)
    try:
        for event in events:
            if isinstance(event, ToolCalled):
                thinking.end()
                tools.called(event.call)
            elif isinstance(event, ToolResult):
                tools.result(event)
            elif isinstance(event, TextDelta):
                if request.chunked:
                    reply.text += event.text
                thinking.end()
                if renderer is not None:
                    renderer.feed(event.text)
            elif isinstance(event, ThinkingDelta):
                if request.chunked:
                    reply.thinking += event.text
                thinking.feed(event.text)
            elif isinstance(event, Finished):
                if request.chunked:
                    reply.finished = event
                if isinstance(renderer, JsonLines):
                    renderer.finished(event)
    finally:
        thinking.end()
        if renderer is not None:
            renderer.finish()


def _tool_display(request: OneShot, renderer: Renderer | None) -> ToolDisplay:
    """Where tool calls are shown: --jsonl events, between the answer's parts on a
    terminal, on stderr when stdout is a pipe and stderr a terminal."""
    if isinstance(renderer, JsonLines):
        return renderer
    if isinstance(renderer, MarkdownRenderer):
        return ConsoleTools(renderer.console, renderer.finish)
    if stdin_is_interactive(2) and not request.quiet:
        return StreamTools(sys.stderr)
    return Hidden()


def _thinking_sink(request: OneShot, renderer: Renderer | None) -> ThinkingSink:
    """Where thinking goes: --jsonl events, dimmed on a terminal, else stderr if asked."""
    if isinstance(renderer, JsonLines):
        return Forwarded(renderer.feed_thinking)
    if isinstance(renderer, MarkdownRenderer):
        return LiveThinking(renderer.console, keep=request.show_thinking)
    if request.show_thinking:
        return PlainThinking(sys.stderr)
    return Ignored()


def _chunk_report(chunked: ChunkedPrompt) -> dict[str, Any]:
    return {"input_tokens": chunked.input_tokens, "parts": chunked.parts, "notes": chunked.notes}


def _finish(
    request: OneShot,
    reply: Reply,
    schema: dict[str, Any] | None,
    sampling: SamplingOptions,
    backend: Backend,
    fit: FitReport | None,
    stream: GuardedStream,
    extra: dict[str, Any],
) -> ExitStatus:
    from gptcli.conversation.structured import validate_answer

    finished = reply.finished
    if finished is not None and finished.reason == "interrupted":
        return ExitStatus.INTERRUPTED
    if schema is not None:
        if finished is not None and finished.reason == "length":
            raise SchemaMismatchError(
                f"the answer was cut at {finished.usage.completion_tokens} tokens before its JSON "
                "was complete (raise --max-tokens)"
            )
        validate_answer(reply.text, schema)
    if request.json_output:
        result = {**_json_result(sampling, backend, reply, fit), **extra}
        stream.write(json.dumps(result, ensure_ascii=False))
        stream.write("\n")
    elif sampling.grammar is not None:
        stream.write(reply.text.rstrip("\n") + "\n")
    stream.flush()
    if finished is not None and finished.reason == "length" and stdin_is_interactive(2):
        warn(f"the answer was cut at {finished.usage.completion_tokens} tokens (--max-tokens)")
    return ExitStatus.OK
