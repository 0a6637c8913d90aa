"""`gptcli ask`: one prompt in, one answer out, on a terminal or in a pipe."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gptcli.backends.base import Cancellation, Finished
from gptcli.chat import Conversation, Reply
from gptcli.config import Settings, load_settings
from gptcli.errors import ExitStatus, UsageError
from gptcli.inputs import STDIN_ONLY, compose_prompt, read_stdin, stdin_is_interactive
from gptcli.interrupt import sigint_cancels
from gptcli.paths import AppPaths, app_paths
from gptcli.render import GuardedStream, MarkdownRenderer, PlainRenderer, Renderer
from gptcli.session import SessionRecorder, conversation_of, model_facts
from gptcli.store import SessionError, SessionStore, check_name, new_session_name


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


def warn(message: str, kind: str = "note") -> None:
    sys.stderr.write(f"gptcli: {kind}: {message}\n")
    sys.stderr.flush()


def _read_input(prompt: str | None) -> str:
    stdin = sys.stdin
    if stdin is None or stdin.closed or stdin_is_interactive(0):
        if prompt is None or prompt == STDIN_ONLY:
            raise UsageError(
                "no prompt: give one as an argument, or pipe text on stdin (see gptcli ask --help)"
            )
        return compose_prompt(prompt, None)

    def hint() -> None:
        if stdin_is_interactive(2):
            warn("waiting for stdin to end (Ctrl-D); use </dev/null to send none")

    piped = read_stdin(stdin.buffer, hint if prompt not in (None, STDIN_ONLY) else None)
    if piped.warning:
        warn(piped.warning, "warning")
    return compose_prompt(prompt, piped.text)


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


def _json_result(settings: Settings, model_name: str, reply: Reply) -> dict[str, Any]:
    finished = reply.finished
    assert finished is not None
    timings = finished.timings
    return {
        "text": reply.text,
        "model": model_name,
        "finish_reason": finished.reason,
        "seed": finished.seed,
        "usage": {
            "prompt_tokens": finished.usage.prompt_tokens,
            "completion_tokens": finished.usage.completion_tokens,
            "total_tokens": finished.usage.total_tokens,
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
            "temperature": settings.sampling.temperature,
            "top_p": settings.sampling.top_p,
            "top_k": settings.sampling.top_k,
            "min_p": settings.sampling.min_p,
            "repeat_penalty": settings.sampling.repeat_penalty,
            "max_tokens": settings.sampling.max_tokens,
            "stop": list(settings.sampling.stop),
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


def run_oneshot(request: OneShot, out: IO[str] | None = None) -> ExitStatus:
    from gptcli.backends.loader import open_backend

    paths = app_paths()
    settings = load_settings(paths.config_file, request.flags)
    user_text = _read_input(request.prompt)
    cancel = Cancellation()
    with sigint_cancels(cancel):
        backend, notices = open_backend(settings, paths, cancel, debug=request.debug)
    try:
        for notice in notices:
            warn(notice)
        stream = GuardedStream(out or sys.stdout)
        conversation, recorder = _open_session(request, settings, paths)
        if recorder is not None:
            recorder.user(user_text)  # on disk before the answer starts
        reply = Reply()
        renderer = None if request.json_output else _renderer(stream, request.plain)
        with sigint_cancels(cancel):
            try:
                for event in conversation.send(
                    user_text, backend, settings.sampling, cancel, reply
                ):
                    if renderer is not None and not isinstance(event, Finished):
                        renderer.feed(event.text)
            finally:
                if renderer is not None:
                    renderer.finish()
                if recorder is not None and (reply.text or reply.finished):
                    details = backend.details
                    facts = model_facts(Path(details.path), details.name, paths.cache_dir)
                    recorder.answer(reply.text, reply.finished, facts, settings.sampling)
        if request.json_output:
            result = _json_result(settings, backend.details.name, reply)
            stream.write(json.dumps(result, ensure_ascii=False) + "\n")
            stream.flush()
        finished = reply.finished
        if finished is not None and finished.reason == "interrupted":
            return ExitStatus.INTERRUPTED
        if finished is not None and finished.reason == "length" and stdin_is_interactive(2):
            warn(f"the answer was cut at {finished.usage.completion_tokens} tokens (--max-tokens)")
        return ExitStatus.OK
    finally:
        backend.close()
