"""One prompt, one answer: `ask` (and `cmd`) from settings to the recorded turn.

The input is read a little ahead before the model loads (enough for any input that
fits a context, and to refuse binary input early); the rest streams as it is used.
A session (``-c``, ``--session``) is continued and recorded, its KV snapshot restored
before the answer and written after the answer is out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gptcli.answering.attaching import after_attachments, counted, for_model, read_attachments
from gptcli.answering.environment import Environment
from gptcli.answering.events import Answered, Display
from gptcli.answering.inputs import STDIN_ONLY, Attachment, compose_prompt
from gptcli.answering.settings import build_settings, constrained
from gptcli.answering.tools import ToolFlags, tool_use
from gptcli.attachments.read import STDIN
from gptcli.config import SamplingOptions, Settings
from gptcli.conversation.chat import Conversation, Reply
from gptcli.conversation.context import (
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
from gptcli.conversation.toolloop import AnswerEvent, ToolUse
from gptcli.engine.abilities import abilities
from gptcli.engine.base import Backend, Cancellation, Finished, TextDelta, ThinkingDelta
from gptcli.engine.promptcache import PromptWrite
from gptcli.errors import ExitStatus, UsageError
from gptcli.store.sessions import SessionError, SessionStore, check_name, new_session_name

READ_AHEAD = 1024 * 1024  # characters of input read before the model loads
DEFAULT_CHUNKED_TASK = "Summarise this text."


@dataclass(frozen=True)
class AskRequest:
    """One question: the prompt, what is attached, where it is recorded, how it is bound."""

    prompt: str | None
    flags: Mapping[str, Any]
    session: str | None = None
    continue_last: bool = False
    on_overflow: str | None = None
    chunked: bool = False
    files: tuple[Path, ...] = ()
    attachments: tuple[str, ...] = ()  # -a: paths, folders, URLs, '-' for stdin
    schema: str | None = None
    grammar: str | None = None
    role: str | None = None
    variables: tuple[str, ...] = ()
    ignore_eos: bool = False
    tools: ToolFlags = field(default_factory=ToolFlags)


@dataclass(frozen=True)
class _Turn:
    inputs: tuple[str | None, Attachment]  # the instruction, and what is attached to it
    settings: Settings
    sampling: SamplingOptions
    policy: OverflowPolicy
    schema: dict[str, Any] | None
    tools: ToolUse | None = None


def run_ask(request: AskRequest, env: Environment, display: Display) -> ExitStatus:
    """Answer ``request``: the answer goes to ``display`` as it comes, then its result."""
    from gptcli.models.loader import open_backend

    if request.session is not None:
        check_name(request.session)  # an empty name (an unset variable) would save nothing
        if request.continue_last:  # two sessions named: which one was meant is not known
            raise UsageError("-c continues the most recent session: not with --session NAME")
    if request.chunked and (request.session or request.continue_last):
        raise UsageError("--chunked cannot be combined with sessions (-c, --session)")
    if request.chunked and (request.tools.names or request.tools.functions):
        raise UsageError("--chunked cannot be combined with tools (-T, --functions)")
    settings = build_settings(env.paths, request.flags, request.role, request.variables)
    if request.chunked and settings.pdf_pages in ("images", "both"):
        raise UsageError(f"--chunked reads PDFs as text: not with --pdf-pages {settings.pdf_pages}")
    policy = check_policy(request.on_overflow or settings.on_overflow or "error")
    sampling, schema = constrained(settings.sampling, request.schema, request.grammar)
    sampling = replace(sampling, ignore_eos=request.ignore_eos)
    # Until the input is read (a little ahead: the rest streams later) a signal ends the
    # process at once; from here on it asks the engine to stop at the next token.
    cancel = Cancellation()
    instruction, attachment = _gather_input(request, env, cancel)
    # Tools first: a wrong name is reported before a model takes seconds to load.
    with env.cancelling(cancel), tool_use(request.tools, settings.tools, env.asker) as tools:
        backend, notices = open_backend(
            settings, env.paths, cancel, debug=env.debug, report=env.pull_report()
        )
        for notice in notices:
            env.note(notice)
        try:
            turn = _Turn((instruction, attachment), settings, sampling, policy, schema, tools)
            status = _answer(request, turn, backend, cancel, env, display)
        finally:
            backend.close()
    return ExitStatus.INTERRUPTED if cancel.cancelled else status


def _gather_input(
    request: AskRequest, env: Environment, cancel: Cancellation
) -> tuple[str | None, Attachment]:
    """(instruction, attached text): the prompt argument, then files and piped stdin."""
    prompt = None if request.prompt == STDIN_ONLY else request.prompt
    attached = read_attachments(request.attachments, env)
    stdin = None if STDIN in request.attachments else env.stdin
    attachment = Attachment(request.files, stdin, env.warn, cancel, attached)
    if stdin is None and prompt is None and not request.files and not attached:
        raise UsageError(
            "no prompt: give one as an argument, or pipe text on stdin (see gptcli ask --help)"
        )

    def hint() -> None:
        if env.stderr_interactive:
            env.note("waiting for stdin to end (Ctrl-D); use </dev/null to send none")

    attachment.read_ahead(READ_AHEAD, hint if prompt is not None else None)
    return prompt, attachment


def _open_session(
    request: AskRequest, settings: Settings, env: Environment
) -> tuple[Conversation, SessionRecorder | None]:
    """The conversation `ask` continues, and where to save it (only with -c or --session)."""
    if not (request.session or request.continue_last):
        return Conversation(system=settings.system), None
    store = SessionStore(env.paths.data_dir)
    name = request.session or store.most_recent() or new_session_name()
    check_name(name)
    session = None
    if store.exists(name):
        try:
            session = store.load(name)
        except SessionError as exc:
            env.warn(exc.message)
    recorder = SessionRecorder(store, name, env.warn)
    if session is None:
        if settings.system:
            recorder.system(settings.system)
        return Conversation(system=settings.system), recorder
    system = request.flags.get("system") or session.system or settings.system
    return conversation_of(session, system, store.blobs, env.warn), recorder


def _answer(
    request: AskRequest,
    turn: _Turn,
    backend: Backend,
    cancel: Cancellation,
    env: Environment,
    display: Display,
) -> ExitStatus:
    conversation, recorder = _open_session(request, turn.settings, env)
    attachment = turn.inputs[1]
    # --chunked summarises text in parts: a page image is not cut into them.
    pdf_pages = "text" if request.chunked else turn.settings.pdf_pages
    attachment.attached = attached = tuple(
        for_model(attachment.attached, backend, pdf_pages, env.note)
    )
    infos = counted(attached, backend)
    if recorder is not None and conversation.messages:
        _restore_state(recorder, backend, env)
    reply = Reply()
    fit: FitReport | None = None
    extra: dict[str, Any] = {"attachments": [info.record() for info in infos]} if infos else {}
    events: Iterator[AnswerEvent]
    if request.chunked:
        events, report = _chunked(turn.inputs, backend, turn.sampling, cancel, env)
        events = _collecting(events, reply)
        extra["chunked"] = report
    else:
        text, fit = _fitted(conversation, backend, turn, cancel, env)
        if recorder is not None:  # on disk before the answer starts
            recorder.user(after_attachments(text, attached), attached)
        events = conversation.send(text, backend, turn.sampling, cancel, reply, turn.tools)
    display.start(backend.details.name)
    for info in infos:
        display.attached(info)
    try:
        for event in events:
            display.show(event)
    finally:
        try:
            display.end()
        finally:
            # Also after a failure mid-answer, or of the output: the part received is kept.
            record_answer(recorder, backend, env, reply, turn.sampling)
    result = Answered(
        reply, backend.details.name, backend.details.context_size, turn.sampling, fit, extra
    )
    _check(result, turn.schema)
    display.answered(result)
    # The answer is out and flushed; the state is written for the session's next turn.
    _keep_state(recorder, backend, env, cancel.cancelled or env.ending())
    if not (cancel.cancelled or env.ending()):
        keep_prompt(backend, env)
    return ExitStatus.INTERRUPTED if result.interrupted else ExitStatus.OK


def _fitted(
    conversation: Conversation,
    backend: Backend,
    turn: _Turn,
    cancel: Cancellation,
    env: Environment,
) -> tuple[str, FitReport]:
    """The user's message (instruction and attachment, read within what fits) and how the
    conversation was made to fit the window with it."""
    instruction, attachment = turn.inputs
    limit = input_limit(conversation, turn.policy, turn.sampling, backend.details.context_size)
    attached = read_within(attachment.blocks(), backend, limit, cancel)
    text = compose_prompt(instruction, attached or None)
    fit = fit_conversation(conversation, text, backend, turn.policy, turn.sampling, cancel)
    if fit.notice():
        env.note(str(fit.notice()))
    return text, fit


def _collecting(events: Iterator[AnswerEvent], reply: Reply) -> Iterator[AnswerEvent]:
    """The events of a --chunked answer, collected into its reply as they pass."""
    for event in events:
        if isinstance(event, TextDelta):
            reply.text += event.text
            reply.final_text = reply.text
        elif isinstance(event, ThinkingDelta):
            reply.thinking += event.text
        elif isinstance(event, Finished):
            reply.finished = event
        yield event


def _chunked(
    inputs: tuple[str | None, Attachment],
    backend: Backend,
    sampling: SamplingOptions,
    cancel: Cancellation,
    env: Environment,
) -> tuple[Iterator[AnswerEvent], dict[str, Any]]:
    """A long input summarised part by part; the answer to the instruction over the notes."""
    instruction, attachment = inputs
    show = env.stderr_interactive or env.debug
    chunked = chunked_messages(
        attachment.blocks(),
        instruction or DEFAULT_CHUNKED_TASK,
        backend,
        sampling,
        cancel,
        _part_progress(attachment, env) if show else None,
    )
    report = {"input_tokens": chunked.input_tokens, "parts": chunked.parts, "notes": chunked.notes}
    return backend.stream(chunked.messages, sampling, cancel), report


def _check(result: Answered, schema: dict[str, Any] | None) -> None:
    """An answer bound to a schema must be complete and conform (exit 5 otherwise)."""
    from gptcli.conversation.structured import check_answer

    finished = result.reply.finished
    if schema is not None and not result.interrupted and finished is not None:
        check_answer(result.reply.text, finished, schema)


def record_answer(
    recorder: SessionRecorder | None,
    backend: Backend,
    env: Environment,
    reply: Reply,
    sampling: SamplingOptions,
    retry: bool = False,
) -> None:
    """Save an answer into its session (an interrupted or failed one too, marked)."""
    if recorder is None or not (reply.text or reply.finished):
        return
    recorder.answer(
        reply.final_text,
        reply.finished,
        answer_facts(backend, env.paths.cache_dir),
        sampling,
        replace_previous=retry,
        thinking=reply.thinking,
        steps=reply.steps,
    )


def _restore_state(recorder: SessionRecorder, backend: Backend, env: Environment) -> None:
    start = time.perf_counter()
    restored = restore_state(recorder.store, recorder.name, backend, env.paths.cache_dir)
    if env.debug:
        took = time.perf_counter() - start
        env.note(f"restored {restored} tokens of the session's state in {took * 1000:.0f} ms")


def _keep_state(
    recorder: SessionRecorder | None, backend: Backend, env: Environment, hurried: bool
) -> None:
    """Write the session's KV snapshot; a disk that refuses costs the next turn, not this one."""
    try:
        written = save_state(recorder, backend, env.paths.cache_dir, hurried)
    except OSError as exc:
        env.warn(f"could not save the session's state ({exc.strerror}); the next turn is slower")
        return
    if env.debug and written is not None:
        env.note(
            f"saved {written.tokens} tokens of the session's state, {written.size:,} bytes, "
            f"in {written.seconds * 1000:.0f} ms"
        )


def keep_prompt(backend: Backend, env: Environment, keep_answer: bool = False) -> None:
    """Write the prompt cache's entry for the first answer's prompt, once it is out (the
    backend's cells beyond that prompt go, or with ``keep_answer`` stay and are written
    too); a disk that refuses is one note."""
    caching = abilities(backend).prompt_cache
    if caching is not None:
        write_prompt_cache(lambda: caching.save_prompt_cache(keep_answer), env)


def write_prompt_cache(save: Callable[[], PromptWrite | None], env: Environment) -> None:
    """Write a prompt cache entry with ``save``: a disk that refuses is one note."""
    try:
        written = save()
    except OSError as exc:
        env.note(f"the prompt cache could not be written ({exc.strerror}); it is skipped")
        return
    if env.debug and written is not None:
        env.note(f"cached {written.tokens} prompt tokens, {written.size:,} bytes")


def _part_progress(attachment: Attachment, env: Environment) -> Callable[[PartProgress], None]:
    """Progress lines for --chunked: parts and, while the input is read, how far and when done."""
    started: list[float] = []

    def show(step: PartProgress) -> None:
        started[:] = started or [env.clock()]
        if step.of is not None or step.done <= 0 or not attachment.chars_read:
            env.note(str(step))
            return
        done = step.done * attachment.bytes_read / attachment.chars_read
        total = attachment.total_bytes
        if total is None or done >= total:
            env.note(f"{step} ({_size(done)} done)")
            return
        parts = max(step.number, round((step.number - 1) * total / done))
        left = (env.clock() - started[0]) * (total - done) / done
        env.note(f"{step} of ~{parts} ({_size(done)} of {_size(total)}, {_duration(left)} left)")

    return show


def _size(count: float) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
