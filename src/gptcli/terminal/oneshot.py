"""`gptcli ask`: one prompt in, one answer out, on a terminal or in a pipe."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
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
    check_policy,
    chunked_messages,
    fit_conversation,
)
from gptcli.conversation.kvstate import restore_state, save_state
from gptcli.conversation.recorder import SessionRecorder, answer_facts, conversation_of
from gptcli.conversation.roles import role_layer
from gptcli.engine.base import Backend, Cancellation, Event, Finished, TextDelta
from gptcli.errors import ExitStatus, SchemaMismatchError, UsageError
from gptcli.paths import AppPaths, app_paths
from gptcli.store.sessions import SessionError, SessionStore, check_name, new_session_name
from gptcli.terminal.inputs import (
    STDIN_ONLY,
    compose_prompt,
    decode_input,
    read_stdin,
    stdin_is_interactive,
)
from gptcli.terminal.interrupt import ending_signal, signals_cancel
from gptcli.terminal.render import GuardedStream, MarkdownRenderer, PlainRenderer, Renderer

MAX_FILE = 64 * 1024 * 1024
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


_quiet: ContextVar[bool] = ContextVar("quiet", default=False)


def warn(message: str, kind: str = "note") -> None:
    """A note or warning on stderr (errors go through the CLI's error boundary instead)."""
    if _quiet.get():
        return
    sys.stderr.write(f"gptcli: {kind}: {message}\n")
    sys.stderr.flush()


def _read_files(paths: tuple[Path, ...]) -> str | None:
    parts = []
    for path in paths:
        try:
            if path.is_dir():
                raise UsageError(f"{path} is a directory, not a text file")
            if path.stat().st_size > MAX_FILE:
                raise UsageError(f"{path} is larger than {MAX_FILE // 2**20} MiB")
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"file not found: {path}") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        decoded = decode_input(data, source=str(path))
        if decoded.warning:
            warn(decoded.warning, "warning")
        parts.append(f"=== {path.name} ===\n{decoded.text.rstrip()}")
    return "\n\n".join(parts) if parts else None


def _gather_input(request: OneShot) -> tuple[str | None, str | None]:
    """(instruction, attached text): the prompt argument, then files and piped stdin."""
    prompt = None if request.prompt == STDIN_ONLY else request.prompt
    attached = _read_files(request.files)
    stdin = sys.stdin
    if stdin is None or stdin.closed or stdin_is_interactive(0):
        if prompt is None and attached is None:
            raise UsageError(
                "no prompt: give one as an argument, or pipe text on stdin (see gptcli ask --help)"
            )
        return prompt, attached

    def hint() -> None:
        if stdin_is_interactive(2):
            warn("waiting for stdin to end (Ctrl-D); use </dev/null to send none")

    piped = read_stdin(stdin.buffer, hint if prompt is not None else None)
    if piped.warning:
        warn(piped.warning, "warning")
    if piped.text.strip():
        attached = f"{attached}\n\n{piped.text}" if attached else piped.text
    return prompt, attached


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
    schema, grammar = _constraints(request)
    sampling = replace(
        settings.sampling, grammar=grammar, schema=schema, ignore_eos=request.ignore_eos
    )
    instruction, attached = _gather_input(request)
    # From here on a signal asks the engine to stop at the next token (see interrupt.py);
    # before, nothing was written and a signal ends the process at once.
    cancel = Cancellation()
    with signals_cancel(cancel):
        backend, notices = open_backend(settings, paths, cancel, debug=request.debug)
        for notice in notices:
            warn(notice)
        try:
            status = _answer(
                request,
                _Turn(settings, paths, sampling, policy, schema),
                backend,
                (instruction, attached),
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


def _answer(
    request: OneShot,
    turn: _Turn,
    backend: Backend,
    inputs: tuple[str | None, str | None],
    cancel: Cancellation,
    out: IO[str] | None,
) -> ExitStatus:
    instruction, attached = inputs
    sampling, paths = turn.sampling, turn.paths
    stream = GuardedStream(out or sys.stdout)
    conversation, recorder = _open_session(request, turn.settings, paths)
    if recorder is not None and conversation.messages:
        _restore_state(recorder, backend, paths, request.debug)
    reply = Reply()
    fit: FitReport | None = None
    chunked: ChunkedPrompt | None = None
    if request.chunked:
        progress = warn if stdin_is_interactive(2) or request.debug else None
        chunked = chunked_messages(
            attached or "",
            instruction or DEFAULT_CHUNKED_TASK,
            backend,
            sampling,
            cancel,
            lambda line: progress(line) if progress else None,
        )
        events: Iterator[Event] = backend.stream(chunked.messages, sampling, cancel)
    else:
        user_text = compose_prompt(instruction, attached)
        fit = fit_conversation(conversation, user_text, backend, turn.policy, sampling, cancel)
        if fit.notice():
            warn(str(fit.notice()))
        if recorder is not None:
            recorder.user(user_text)  # on disk before the answer starts
        events = conversation.send(user_text, backend, sampling, cancel, reply)
    held = sampling.grammar is not None
    try:
        _show(events, reply, request, stream, held, backend.details.name)
    finally:
        # Also after a failure mid-answer: the part received is kept, marked.
        if recorder is not None and (reply.text or reply.finished):
            facts = answer_facts(backend, paths.cache_dir)
            recorder.answer(reply.text, reply.finished, facts, sampling)
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
    events: Iterator[Event],
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
    try:
        for event in events:
            if isinstance(event, TextDelta):
                if request.chunked:
                    reply.text += event.text
                if renderer is not None:
                    renderer.feed(event.text)
            elif isinstance(event, Finished):
                if request.chunked:
                    reply.finished = event
                if isinstance(renderer, JsonLines):
                    renderer.finished(event)
    finally:
        if renderer is not None:
            renderer.finish()


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
