"""The items of a `gptcli batch` input: lines of JSONL or plain text to prompts and options.

An item's own fields (``system``, ``temperature``, ``max_tokens``, ``seed``)
override the settings; fields it does not know are left alone, so an input can
carry data of its own. A line that is not a usable item becomes an
:class:`ItemError` that names the line, and the other items go on.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from gptcli.config import SamplingOptions
from gptcli.engine.base import Message
from gptcli.parsing import loads_json

ItemId = str | int


@dataclass(frozen=True)
class Item:
    """One prompt of the input, with what it overrides."""

    index: int  # place among the input's items, from 0
    id: ItemId
    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


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
            temperature=_temperature(value.get("temperature")),
            max_tokens=_count(value.get("max_tokens"), "max_tokens", minimum=1),
            seed=_count(value.get("seed"), "seed", minimum=0),
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


def _temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError("temperature must be a number")
    if not 0 <= value <= 5:
        raise ValueError("temperature must be between 0 and 5")
    return float(value)


def _count(value: Any, key: str, minimum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer of at least {minimum}")
    return value


def item_messages(item: Item, system: str | None) -> tuple[Message, ...]:
    """The conversation that asks ``item``: its system prompt (or the settings') and its prompt."""
    system = item.system if item.system is not None else system
    user = Message("user", item.prompt)
    return (Message("system", system), user) if system else (user,)


def item_options(item: Item, sampling: SamplingOptions) -> SamplingOptions:
    """The settings' sampling options with the item's own on top."""
    changes: dict[str, Any] = {}
    if item.temperature is not None:
        changes["temperature"] = item.temperature
    if item.max_tokens is not None:
        changes["max_tokens"] = item.max_tokens
    if item.seed is not None:
        changes["seed"] = item.seed
    return replace(sampling, **changes) if changes else sampling
