"""`gptcli batch`: many prompts in, one JSON line per answer out.

The input is read one line at a time as slots free up, and each result is
written and flushed when its item finishes (with ``--ordered``, when every item
before it has been written; only the results that finished early are held).
So a run's memory does not grow with its input, and an interrupted run keeps
every answer that had finished: ``--resume`` skips their ids.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from itertools import chain, islice
from pathlib import Path
from typing import IO, Any

from gptcli.config import SamplingOptions, Settings, load_settings
from gptcli.conversation.batchitems import (
    Item,
    ItemError,
    ItemId,
    id_key,
    item_messages,
    item_options,
    read_items,
)
from gptcli.conversation.roles import role_layer
from gptcli.engine.base import Backend, Cancellation
from gptcli.engine.batch import (
    BatchEngine,
    BatchJob,
    BatchOutcome,
    open_engine,
    parallel_for,
)
from gptcli.errors import (
    ContextOverflowError,
    ExitStatus,
    GptcliError,
    SchemaMismatchError,
    UsageError,
)
from gptcli.paths import app_paths
from gptcli.terminal.inputs import stdin_is_interactive
from gptcli.terminal.interrupt import signals_cancel
from gptcli.terminal.render import GuardedStream


@dataclass(frozen=True)
class BatchRequest:
    """One `batch` invocation as parsed from the command line."""

    source: Path | None  # None: stdin
    flags: Mapping[str, Any]
    output: Path | None = None
    lines: bool = False
    ordered: bool = False
    resume: bool = False
    parallel: int | None = None
    schema: str | None = None
    role: str | None = None
    quiet: bool = False
    debug: bool = False


@dataclass(frozen=True)
class _Plan:
    settings: Settings
    sampling: SamplingOptions
    schema: dict[str, Any] | None


class ResultWriter:
    """Writes result records as JSON lines, flushed one by one, in finishing or input order."""

    def __init__(self, stream: GuardedStream, ordered: bool) -> None:
        self._stream = stream
        self._ordered = ordered
        self._held: dict[int, dict[str, Any] | None] = {}  # None: an item skipped (--resume)
        self._next = 0
        self.written = 0
        self.failed = 0

    def put(self, index: int, record: dict[str, Any]) -> None:
        self.written += 1
        self.failed += "error" in record
        if not self._ordered:
            self._write(record)
            return
        self._held[index] = record
        self._release()

    def skip(self, index: int) -> None:
        if self._ordered:
            self._held[index] = None
            self._release()

    def _release(self) -> None:
        while self._next in self._held:
            record = self._held.pop(self._next)
            self._next += 1
            if record is not None:
                self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()


def error_record(item_id: ItemId, error: GptcliError) -> dict[str, Any]:
    kind = "error"
    if isinstance(error, UsageError):
        kind = "input"
    elif isinstance(error, ContextOverflowError):
        kind = "context"
    elif isinstance(error, SchemaMismatchError):
        kind = "schema"
    return {"id": item_id, "error": {"kind": kind, "message": error.message}}


def answer_record(
    item_id: ItemId, outcome: BatchOutcome, schema: dict[str, Any] | None
) -> dict[str, Any]:
    from gptcli.conversation.structured import validate_answer

    finished = outcome.finished
    if outcome.error is not None or finished is None:
        return error_record(item_id, outcome.error or GptcliError("no answer"))
    if schema is not None:
        try:
            if finished.reason == "length":
                raise SchemaMismatchError(
                    f"the answer was cut at {finished.usage.completion_tokens} tokens before "
                    "its JSON was complete (raise --max-tokens)"
                )
            validate_answer(outcome.text, schema)
        except SchemaMismatchError as exc:
            return error_record(item_id, exc)
    timings = finished.timings
    return {
        "id": item_id,
        "text": outcome.text,
        "finish_reason": finished.reason,
        "seed": finished.seed,
        "usage": {
            "prompt_tokens": finished.usage.prompt_tokens,
            "completion_tokens": finished.usage.completion_tokens,
            "total_tokens": finished.usage.total_tokens,
        },
        "timings": {
            "time_to_first_token_s": round(timings.time_to_first_token, 4),
            "prompt_s": round(timings.prompt_seconds, 4),
            "decode_s": round(timings.decode_seconds, 4),
            "tokens_per_s": round(finished.decode_tokens_per_second, 2),
            "cached_prompt_tokens": timings.cached_tokens,
        },
    }


def finished_ids(path: Path) -> set[str]:
    """The ids ``path`` already has a record for; a last line cut short is removed."""
    done: set[str] = set()
    try:
        handle = path.open("rb+")
    except FileNotFoundError:
        return done
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        complete = 0
        for line in handle:
            if not line.endswith(b"\n"):
                break
            complete += len(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "id" in record:
                done.add(id_key(record["id"]))
        handle.truncate(complete)
    return done


def _open_output(request: BatchRequest) -> tuple[IO[str] | None, set[str]]:
    if request.output is None:
        if request.resume:
            raise UsageError("--resume needs -o FILE: the ids already in it are skipped")
        return None, set()
    done = finished_ids(request.output) if request.resume else set()
    try:
        handle = request.output.open("a" if request.resume else "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {request.output}: {exc.strerror}") from None
    return handle, done


def _input_lines(request: BatchRequest) -> IO[bytes]:
    if request.source is None or str(request.source) == "-":
        if sys.stdin is None or sys.stdin.closed or stdin_is_interactive(0):
            raise UsageError("no input: give a file, or pipe JSONL on stdin (see gptcli batch -h)")
        return sys.stdin.buffer
    try:
        return request.source.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {request.source}: {exc.strerror}") from None


def _plan(request: BatchRequest) -> _Plan:
    from gptcli.conversation.structured import load_schema, schema_grammar

    paths = app_paths()
    roles = role_layer(paths.config_dir, request.role, [])
    settings = load_settings(paths.config_file, request.flags, roles)
    schema = load_schema(request.schema) if request.schema else None
    grammar = schema_grammar(schema) if schema is not None else None
    sampling = replace(settings.sampling, grammar=grammar, schema=schema)
    return _Plan(settings, sampling, schema)


def run_batch(request: BatchRequest) -> ExitStatus:
    if request.parallel is not None and request.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    plan = _plan(request)
    source = _input_lines(request)
    handle, done = _open_output(request)
    try:
        stream = GuardedStream(handle or sys.stdout)
        writer = ResultWriter(stream, request.ordered)
        status = _run(request, plan, source, done, writer)
    finally:
        if handle is not None:
            handle.close()
        if source is not sys.stdin.buffer:
            source.close()
    if status == ExitStatus.OK and writer.failed:
        sys.stderr.write(
            f"gptcli: error: {writer.failed} of {writer.written} items failed "
            "(see their error records)\n"
        )
        return ExitStatus.ERROR
    return status


class _Jobs:
    """The input's items as jobs, writing error records and skipping finished ids on the way."""

    def __init__(self, items: Iterator[Item | ItemError], plan: _Plan, done: set[str]) -> None:
        self._items = items
        self._plan = plan
        self._done = done
        self.ids: dict[int, ItemId] = {}  # jobs handed out and not yet answered
        self.skipped = 0

    def each(self, writer: ResultWriter) -> Iterator[BatchJob]:
        sampling, system = self._plan.sampling, self._plan.settings.system
        for item in self._items:
            if self._done and id_key(item.id) in self._done:
                self.skipped += 1
                writer.skip(item.index)
            elif isinstance(item, ItemError):
                writer.put(item.index, error_record(item.id, UsageError(item.message)))
            else:
                self.ids[item.index] = item.id
                yield BatchJob(
                    item.index, item_messages(item, system), item_options(item, sampling)
                )


def _run(
    request: BatchRequest,
    plan: _Plan,
    source: IO[bytes],
    done: set[str],
    writer: ResultWriter,
) -> ExitStatus:
    from gptcli.models.loader import open_backend

    jobs = _Jobs(read_items(source, request.lines), plan, done)
    pending = jobs.each(writer)
    cancel = Cancellation()
    with signals_cancel(cancel):
        backend, notices = open_backend(plan.settings, app_paths(), cancel, debug=request.debug)
        if not request.quiet:
            for notice in notices:
                sys.stderr.write(f"gptcli: note: {notice}\n")
        try:
            engine = _engine(request, backend, pending)
            progress = _progress(request, writer, jobs, engine[0])
            try:
                for outcome in engine[0].run(engine[1], cancel):
                    item_id = jobs.ids.pop(outcome.index)
                    writer.put(outcome.index, answer_record(item_id, outcome, plan.schema))
            finally:
                engine[0].close()
                if progress is not None:
                    progress.stop()
        finally:
            backend.close()
    return ExitStatus.INTERRUPTED if cancel.cancelled else ExitStatus.OK


def _engine(
    request: BatchRequest, backend: Backend, pending: Iterator[BatchJob]
) -> tuple[BatchEngine, Iterator[BatchJob]]:
    """The engine for ``backend``, sized by --parallel or the default, and no larger than
    the input (its first jobs are read ahead to know)."""
    window = backend.details.context_size
    wanted = parallel_for(backend, window, request.parallel)
    first = list(islice(pending, wanted))
    parallel = max(1, min(wanted, len(first)))
    return open_engine(backend, parallel, window), chain(first, pending)


class _Progress:
    """A one-line progress bar on stderr, redrawn twice a second from its own thread."""

    def __init__(
        self, writer: ResultWriter, jobs: _Jobs, engine: BatchEngine, total: int | None
    ) -> None:
        self._writer, self._jobs, self._engine, self._total = writer, jobs, engine, total
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _line(self) -> str:
        elapsed = max(1e-6, time.monotonic() - self._started)
        done = self._writer.written + self._jobs.skipped
        rate = self._engine.tokens_generated / elapsed
        text = f"{done}" + (f"/{self._total}" if self._total is not None else "") + " items"
        if self._total:
            width = 24
            filled = min(width, width * done // self._total)
            text = f"[{'#' * filled}{'.' * (width - filled)}] {text}"
            finished_now = self._writer.written
            if finished_now:
                left = (self._total - done) * elapsed / finished_now
                text += f"  ETA {int(left) // 60}:{int(left) % 60:02d}"
        return f"{text}  {rate:.1f} tokens/s"

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._draw(self._line())

    def _draw(self, line: str) -> None:
        try:
            sys.stderr.write(f"\r\x1b[K{line}")
            sys.stderr.flush()
        except (OSError, ValueError):
            self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._draw(self._line() + "\n")


def _count_items(path: Path | None) -> int | None:
    """Non-blank lines of an input file, read in blocks (stdin cannot be counted ahead)."""
    if path is None or str(path) == "-" or not path.is_file():
        return None
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            count += bool(line.strip())
    return count


def _progress(
    request: BatchRequest, writer: ResultWriter, jobs: _Jobs, engine: BatchEngine
) -> _Progress | None:
    if request.quiet or not stdin_is_interactive(2) or os.environ.get("TERM") == "dumb":
        return None
    return _Progress(writer, jobs, engine, _count_items(request.source))
