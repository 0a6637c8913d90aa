"""Many prompts, one answer each: `batch` from settings to checked outcomes.

Items are read one at a time as slots free up and each outcome is handed on when it
finishes, so a run's memory does not grow with its input; the front end writes the
records (terminal/batch.py) and may skip ids an earlier run finished (``--resume``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import Any, Protocol

from gptcli.answering.ask import write_prompt_cache
from gptcli.answering.attaching import AttachmentInfo, counted, for_model
from gptcli.answering.environment import Environment
from gptcli.answering.inputs import compose_prompt
from gptcli.answering.settings import build_settings, constrained
from gptcli.config import SamplingOptions, Settings
from gptcli.conversation.batchitems import (
    FIELDS,
    Item,
    ItemError,
    ItemId,
    item_messages,
    item_options,
)
from gptcli.engine.base import Backend, Cancellation
from gptcli.engine.batch import BatchJob, BatchOutcome, open_engine, parallel_for
from gptcli.errors import ExitStatus, GptcliError, SchemaMismatchError, UsageError


@dataclass(frozen=True)
class BatchRequest:
    """One `batch` run: its settings, how many answers at once, what they are bound to."""

    flags: Mapping[str, Any]
    parallel: int | None = None
    schema: str | None = None
    role: str | None = None


class BatchResults(Protocol):
    """Where a batch's results go, in finishing order."""

    def answered(
        self,
        index: int,
        item_id: ItemId,
        outcome: BatchOutcome,
        attachments: Sequence[AttachmentInfo] = (),
    ) -> None:
        """An item answered, with what its attachments cost (tokens, encoding)."""
        ...

    def failed(self, index: int, item_id: ItemId | None, error: GptcliError) -> None: ...

    def skip(self, index: int) -> None:
        """An item whose id ``--resume`` found finished already."""
        ...

    def working(self, tokens_generated: Callable[[], int]) -> None:
        """The engine runs: answers' tokens so far, for progress."""
        ...

    def stopped(self) -> None: ...


@dataclass(frozen=True)
class _Plan:
    settings: Settings
    sampling: SamplingOptions  # with --schema's grammar and schema, if given


def run_batch(
    request: BatchRequest,
    items: Iterator[Item | ItemError],
    done: Callable[[ItemId | None], bool],
    results: BatchResults,
    env: Environment,
) -> ExitStatus:
    """Answer ``items`` (except those ``done`` already), handing each outcome to ``results``."""
    from gptcli.models.loader import open_backend

    if request.parallel is not None and request.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    settings = build_settings(env.paths, request.flags, request.role)
    plan = _Plan(settings, constrained(settings.sampling, request.schema, None)[0])
    jobs = _Jobs(plan, done, results, env.note)
    pending = jobs.each(items)
    cancel = Cancellation()
    with env.cancelling(cancel):
        backend, notices = open_backend(
            settings, env.paths, cancel, debug=env.debug, report=env.pull_report()
        )
        for notice in notices:
            env.note(notice)
        jobs.backend = backend
        try:
            _answer_all(request, backend, jobs, pending, cancel, env)
        finally:
            backend.close()
    return ExitStatus.INTERRUPTED if cancel.cancelled else ExitStatus.OK


def _answer_all(
    request: BatchRequest,
    backend: Backend,
    jobs: _Jobs,
    pending: Iterator[BatchJob],
    cancel: Cancellation,
    env: Environment,
) -> None:
    # The engine is no larger than the input: its first jobs are read ahead to know.
    window = backend.details.context_size
    wanted = parallel_for(backend, window, request.parallel)
    first = list(islice(pending, wanted))
    engine = open_engine(backend, max(1, min(wanted, len(first))), window)
    jobs.results.working(lambda: engine.tokens_generated)
    try:
        for outcome in engine.run(chain(first, pending), cancel):
            item_id = jobs.ids.pop(outcome.index)
            checked = _checked(outcome, jobs.schemas.pop(outcome.index, None))
            attached = jobs.attached.pop(outcome.index, ())
            if checked.error is not None or checked.finished is None:
                error = checked.error or GptcliError("no answer")
                jobs.results.failed(outcome.index, item_id, error)
            else:
                jobs.results.answered(outcome.index, item_id, checked, attached)
        if not (cancel.cancelled or env.ending()):  # every record is out
            write_prompt_cache(engine.save_prompt_cache, env)
    finally:
        engine.close()
        jobs.results.stopped()


class _Jobs:
    """The input's items as jobs; items in error and finished ids are reported on the way,
    and each field no item may set is named once."""

    def __init__(
        self,
        plan: _Plan,
        done: Callable[[ItemId | None], bool],
        results: BatchResults,
        note: Callable[[str], None],
    ) -> None:
        self.plan = plan
        self._done = done
        self.results = results
        self._note = note
        self._unknown: set[str] = set()
        self.ids: dict[int, ItemId] = {}  # jobs handed out and not yet answered
        self.schemas: dict[int, dict[str, Any]] = {}  # of those, the ones bound to a schema
        self.attached: dict[int, list[AttachmentInfo]] = {}  # of those, what they attach
        self.backend: Backend | None = None  # once loaded: it says which media it takes

    def each(self, items: Iterator[Item | ItemError]) -> Iterator[BatchJob]:
        sampling, system = self.plan.sampling, self.plan.settings.system
        for item in items:
            if self._done(item.id):
                self.results.skip(item.index)
            elif isinstance(item, ItemError):
                self.results.failed(item.index, item.id, UsageError(item.message))
            else:
                self._report_unknown(item)
                try:
                    options = item_options(item, sampling)
                    item = self._with_attachments(item)
                except GptcliError as exc:
                    self.results.failed(item.index, item.id, exc)
                    continue
                self.ids[item.index] = item.id
                if options.schema is not None:
                    self.schemas[item.index] = options.schema
                yield BatchJob(item.index, item_messages(item, system), options)

    def _with_attachments(self, item: Item) -> Item:
        """The item with its attachments read into its prompt (one that cannot be read
        fails the item, not the run)."""
        if not item.attachments:
            return item
        from gptcli.attachments.read import read_attachment

        attached = [read_attachment(source, self._note) for source in item.attachments]
        if self.backend is not None:
            mode = item.pdf_pages or self.plan.settings.pdf_pages
            attached = for_model(attached, self.backend, mode, self._note)
            self.attached[item.index] = counted(attached, self.backend)
        head = "\n\n".join(a.block() for a in attached)
        return replace(item, prompt=compose_prompt(item.prompt, head))

    def _report_unknown(self, item: Item) -> None:
        import difflib

        for name in item.unknown:
            if name in self._unknown:
                continue
            self._unknown.add(name)
            close = difflib.get_close_matches(name, FIELDS, n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self._note(
                f"item {json.dumps(item.id)} has a field {name!r} that is not an option; it is "
                f"ignored{hint}. An item may set: {', '.join(FIELDS[1:])}"
            )


def _checked(outcome: BatchOutcome, schema: dict[str, Any] | None) -> BatchOutcome:
    """The outcome, or its schema error: a bound answer must be complete and conform."""
    from gptcli.conversation.structured import check_answer

    finished = outcome.finished
    if schema is None or outcome.error is not None or finished is None:
        return outcome
    try:
        check_answer(outcome.text, finished, schema)
    except SchemaMismatchError as exc:
        return replace(outcome, error=exc)
    return outcome
