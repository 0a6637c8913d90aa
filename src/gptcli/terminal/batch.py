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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gptcli.answering.attaching import AttachmentInfo
from gptcli.answering.batch import BatchRequest, run_batch
from gptcli.conversation.batchitems import ItemId, id_key, read_items
from gptcli.engine.batch import BatchOutcome
from gptcli.errors import (
    ContextOverflowError,
    ExitStatus,
    GptcliError,
    SchemaMismatchError,
    UsageError,
)
from gptcli.paths import cannot_write
from gptcli.terminal.environment import stdin_is_interactive, terminal_environment
from gptcli.terminal.render import GuardedStream


@dataclass(frozen=True)
class BatchCommand:
    """One `batch` invocation as parsed from the command line."""

    request: BatchRequest
    source: Path | None  # None: stdin
    output: Path | None = None
    lines: bool = False
    ordered: bool = False
    resume: bool = False
    quiet: bool = False
    debug: bool = False


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


def error_record(item_id: ItemId | None, error: GptcliError) -> dict[str, Any]:
    kind = "error"
    if isinstance(error, UsageError):
        kind = "input"
    elif isinstance(error, ContextOverflowError):
        kind = "context"
    elif isinstance(error, SchemaMismatchError):
        kind = "schema"
    return {"id": item_id, "error": {"kind": kind, "message": error.message}}


def answer_record(
    item_id: ItemId, outcome: BatchOutcome, attachments: Sequence[AttachmentInfo] = ()
) -> dict[str, Any]:
    """An answered item's record: its text, how it ended, usage and timings, and what its
    attachments took (as `ask --json` gives them: tokens, read and encode seconds)."""
    finished = outcome.finished
    if outcome.error is not None or finished is None:
        return error_record(item_id, outcome.error or GptcliError("no answer"))
    timings = finished.timings
    extra = {"attachments": [info.record() for info in attachments]} if attachments else {}
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
            "drafted": timings.drafted,
            "accepted": timings.accepted,
        },
        **extra,
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


def _open_output(request: BatchCommand) -> tuple[IO[str] | None, set[str]]:
    if request.output is None:
        if request.resume:
            raise UsageError("--resume needs -o FILE: the ids already in it are skipped")
        return None, set()
    done = finished_ids(request.output) if request.resume else set()
    try:
        handle = request.output.open("a" if request.resume else "w", encoding="utf-8")
    except OSError as exc:
        raise cannot_write(request.output, exc) from None
    return handle, done


def _input_lines(request: BatchCommand) -> IO[bytes]:
    if request.source is None or str(request.source) == "-":
        if sys.stdin is None or sys.stdin.closed or stdin_is_interactive(0):
            raise UsageError("no input: give a file, or pipe JSONL on stdin (see gptcli batch -h)")
        return sys.stdin.buffer
    try:
        return request.source.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {request.source}: {exc.strerror}") from None


def run_batch_command(command: BatchCommand) -> ExitStatus:
    """Read the input, answer it, write one record per item; exit 1 if any item failed."""
    source = _input_lines(command)
    handle, done = _open_output(command)
    env = terminal_environment(quiet=command.quiet, debug=command.debug)
    try:
        writer = ResultWriter(GuardedStream(handle or sys.stdout), command.ordered)
        results = _Records(writer, command)
        items = read_items(source, command.lines)
        finished = (lambda item_id: id_key(item_id) in done) if done else (lambda item_id: False)
        status = run_batch(command.request, items, finished, results, env)
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


class _Records:
    """A batch's results as records through a writer, with a progress line on a terminal."""

    def __init__(self, writer: ResultWriter, command: BatchCommand) -> None:
        self._writer = writer
        self._command = command
        self._progress: _ProgressLine | None = None

    def answered(
        self,
        index: int,
        item_id: ItemId,
        outcome: BatchOutcome,
        attachments: Sequence[AttachmentInfo] = (),
    ) -> None:
        self._writer.put(index, answer_record(item_id, outcome, attachments))
        self._advance()

    def failed(self, index: int, item_id: ItemId | None, error: GptcliError) -> None:
        self._writer.put(index, error_record(item_id, error))
        self._advance()

    def skip(self, index: int) -> None:
        self._writer.skip(index)
        self._advance()

    def _advance(self) -> None:
        if self._progress is not None:
            self._progress.advance()

    def working(self, tokens_generated: Callable[[], int]) -> None:
        command = self._command
        if command.quiet or not stdin_is_interactive(2) or os.environ.get("TERM") == "dumb":
            return
        self._progress = _ProgressLine(tokens_generated, _count_items(command.source))

    def stopped(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class _ProgressLine:
    """Items done of the total, ETA and tokens per second, on stderr's terminal (rich.progress,
    redrawn twice a second: a faster refresh thread takes CPU from decoding on small machines).
    """

    def __init__(self, tokens_generated: Callable[[], int], total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        started = time.monotonic()

        def rate() -> str:
            return f"{tokens_generated() / max(1e-6, time.monotonic() - started):.1f} tokens/s"

        counted = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        columns = counted if total else (TextColumn("{task.completed}"), TimeElapsedColumn())
        self._progress = Progress(
            *columns,
            TextColumn("items"),
            _rate_column(rate),
            console=Console(file=sys.stderr),
            refresh_per_second=2,
        )
        self._task = self._progress.add_task("batch", total=total)
        self._progress.start()

    def advance(self) -> None:
        self._progress.advance(self._task)

    def stop(self) -> None:
        self._progress.stop()


def _rate_column(text: Callable[[], str]) -> Any:
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(text())

    return Rate()


def _count_items(path: Path | None) -> int | None:
    """Non-blank lines of an input file, read in blocks (stdin cannot be counted ahead)."""
    if path is None or str(path) == "-" or not path.is_file():
        return None
    count = 0
    with path.open("rb") as handle:
        for line in handle:
            count += bool(line.strip())
    return count
