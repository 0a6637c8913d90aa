"""The items of a `gptcli batch` input: lines of JSONL or plain text to prompts and options.

An item may set what one request can: ``system``, every sampling option by its
config name (``temperature``, ``top_p``, ``max_tokens``, ``seed``, ``stop``, ``think``,
...), a JSON ``schema`` its answer must follow, ``attachments`` (paths, folders or
URLs, read as ``-a`` reads them) and ``pdf_pages``; these override the settings. A
field that is none of these is reported (a typo such as ``temprature`` must not pass
unnoticed) and otherwise left alone, so an input can carry data of its own. A line
that is not a usable item becomes an :class:`ItemError` that names the line, and the
other items go on.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gptcli.config import SAMPLING_KEYS, PdfPagesMode, SamplingOptions, check_value
from gptcli.conversation.structured import check_schema, schema_grammar
from gptcli.engine.base import Message
from gptcli.errors import GptcliError
from gptcli.parsing import loads_json

ItemId = str | int
FIELDS = ("id", "prompt", "system", "schema", "attachments", "pdf_pages", *SAMPLING_KEYS)


@dataclass(frozen=True)
class Item:
    """One prompt of the input, with what it overrides."""

    index: int  # place among the input's items, from 0
    id: ItemId
    prompt: str
    system: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # sampling options it sets
    schema: dict[str, Any] | None = None
    unknown: tuple[str, ...] = ()  # its fields that are none of FIELDS
    attachments: tuple[str, ...] = ()  # read when the item is taken (answering/batch.py)
    pdf_pages: PdfPagesMode | None = None  # how its PDFs reach a model that sees


@dataclass(frozen=True)
class ItemError:
    """A line that could not be made into an item; ``id`` is None when the line's id
    belongs to an earlier line, so that its record never stands for that line's."""

    index: int
    id: ItemId | None
    message: str


def id_key(value: Any) -> str:
    """How ids are compared (with --resume): 7 and "7" are different ids."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class _IdsSeen:
    """The ids the lines so far took, to refuse a second use (``--resume`` skips by id).

    Memory grows with the ids given in the input, not with the defaulted ones: a
    defaulted id is its line's number, and runs of such lines are kept as ranges.
    """

    def __init__(self) -> None:
        self._given: dict[str, int] = {}  # id_key -> the line that gave it
        self._runs: list[list[int]] = []  # [first, last] line numbers with defaulted ids

    def _defaulted(self, number: int) -> bool:
        at = bisect.bisect_right(self._runs, [number, math.inf]) - 1
        return at >= 0 and self._runs[at][0] <= number <= self._runs[at][1]

    def owner(self, item_id: ItemId) -> int | None:
        """The earlier line that took ``item_id``, if any."""
        given = self._given.get(id_key(item_id))
        if given is not None:
            return given
        if isinstance(item_id, int) and self._defaulted(item_id):
            return item_id
        return None

    def take(self, item_id: ItemId, number: int, defaulted: bool) -> None:
        if not defaulted:
            self._given[id_key(item_id)] = number
        elif self._runs and self._runs[-1][1] == number - 1:
            self._runs[-1][1] = number
        else:
            self._runs.append([number, number])


def read_items(lines: Iterable[bytes], plain: bool) -> Iterator[Item | ItemError]:
    """The items of ``lines``, one at a time; blank lines are not items.

    An id an earlier line took (given, or defaulted to that line's number) makes the
    later line an error whose id is None.
    """
    index = 0
    seen = _IdsSeen()
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not text.strip():
            continue
        if plain:
            yield Item(index, number, text)
        else:
            yield _unique(_parse(index, number, text), number, seen)
        index += 1


def _unique(item: Item | ItemError, number: int, seen: _IdsSeen) -> Item | ItemError:
    if item.id is None:
        return item
    owner = seen.owner(item.id)
    if owner is None:
        seen.take(item.id, number, defaulted=isinstance(item.id, int) and item.id == number)
        return item
    if isinstance(item, ItemError):
        return replace(item, id=None)
    which = " (the line number)" if item.id == number else ""
    shown = json.dumps(item.id, ensure_ascii=False)
    message = f"line {number}: id {shown}{which} is already used by line {owner}"
    return ItemError(item.index, None, message)


def _parse(index: int, number: int, text: str) -> Item | ItemError:
    try:
        value = loads_json(text)
    except json.JSONDecodeError as exc:
        return ItemError(index, number, f"line {number} is not valid JSON ({exc.msg})")
    if not isinstance(value, dict):
        return ItemError(index, number, f"line {number} is not a JSON object")
    item_id = value.get("id", number)
    if isinstance(item_id, bool) or not isinstance(item_id, str | int):
        return ItemError(index, number, f"line {number}: id must be a string or an integer")
    try:
        return Item(
            index,
            item_id,
            _text(value, "prompt", required=True) or "",
            system=_text(value, "system"),
            options=_options(value),
            schema=_schema(value.get("schema")),
            attachments=_attachments(value.get("attachments")),
            pdf_pages=_pdf_pages(value.get("pdf_pages")),
            unknown=tuple(key for key in value if key not in FIELDS),
        )
    except ValueError as exc:
        return ItemError(index, item_id, f"line {number}: {exc}")


def _text(value: dict[str, Any], key: str, required: bool = False) -> str | None:
    text = value.get(key)
    if text is None and not required:
        return None
    if not isinstance(text, str) or (required and not text.strip()):
        raise ValueError(f"{key} must be a non-empty string" if required else f"{key} must be text")
    return text


def _attachments(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("attachments must be a list of paths or URLs")
    if "-" in value:
        raise ValueError("attachments cannot read stdin ('-'): it holds the items")
    return tuple(value)


def _pdf_pages(value: Any) -> PdfPagesMode | None:
    try:
        mode: PdfPagesMode | None = check_value("pdf_pages", value)
    except ValueError as exc:
        raise ValueError(f"pdf_pages {exc}") from None
    return mode


def _options(value: dict[str, Any]) -> dict[str, Any]:
    """The sampling options the item sets, checked as the config file's are."""
    options: dict[str, Any] = {}
    for key in SAMPLING_KEYS:
        if value.get(key) is not None:
            try:
                options[key] = check_value(key, value[key])
            except ValueError as exc:
                raise ValueError(f"{key} {exc}") from None
    return options


def _schema(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        return check_schema(value)
    except GptcliError as exc:
        raise ValueError(exc.message) from None


def item_messages(item: Item, system: str | None) -> tuple[Message, ...]:
    """The conversation that asks ``item``: its system prompt (or the settings') and its prompt."""
    system = item.system if item.system is not None else system
    user = Message("user", item.prompt)
    return (Message("system", system), user) if system else (user,)


def item_options(item: Item, sampling: SamplingOptions) -> SamplingOptions:
    """The settings' sampling options with the item's own on top (its schema as a grammar);
    raises UsageError for a schema that cannot be made a grammar."""
    options = replace(sampling, **item.options) if item.options else sampling
    if item.schema is None:
        return options
    return replace(options, grammar=schema_grammar(item.schema), schema=item.schema)
