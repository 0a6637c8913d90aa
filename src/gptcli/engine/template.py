"""Chat templates: the model's own Jinja template, rendered in a sandbox.

A template in a model file is untrusted code, so it runs only in Jinja's
immutable sandbox. Message contents are rendered as unique markers and then
split back out, so the tokenizer can treat template text (which holds the
special tokens) and user text (which must never become special tokens)
differently.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gptcli.engine.base import Message, ToolSpec
from gptcli.engine.toolformat import (
    ToolFormat,
    generic_messages,
    message_dict,
    one_call_per_turn,
    tool_dict,
    tool_format_of_template,
)

# Used when a model has no template or its template is broken.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class PromptPiece:
    """A run of prompt text; ``special`` runs may contain control tokens, others never."""

    text: str
    special: bool


class TemplateError(Exception):
    """The template failed to compile or render."""


RENDER_SECONDS = 2.0
MAX_RENDERED = 8 * 1024 * 1024


def _budgeted_environment() -> Any:
    """Jinja's immutable sandbox, with `*` and `**` unable to build huge values."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Budgeted(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > 64:
                raise TemplateError("chat template raises a number to a huge power")
            if operator == "*":
                sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
                counts = [v for v in (left, right) if isinstance(v, int)]
                if sizes and counts and sizes[0] * max(counts[0], 0) > MAX_RENDERED:
                    raise TemplateError("chat template builds an oversized value")
            return super().call_binop(context, operator, left, right)

    return Budgeted(trim_blocks=True, lstrip_blocks=True)


@contextmanager
def _time_budget(seconds: float) -> Iterator[None]:
    """Stop a template that runs too long (main thread on Unix; elsewhere unbounded)."""
    import signal
    import threading

    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise TemplateError(f"chat template took longer than {seconds:.0f} s to render")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # As Hugging Face's renderer (and llama.cpp's) writes it: keys in their order and
    # text as it is, where Jinja's own filter sorts keys and escapes <, > and &.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _encodings(text: str) -> tuple[tuple[str, str], ...]:
    """``text`` as it appears in rendered output: verbatim, or inside a JSON string."""
    return (
        (text, text),
        (json.dumps(text, ensure_ascii=False)[1:-1], "json"),
        (json.dumps(text)[1:-1], "ascii-json"),
    )


def _encoded(content: str, how: str) -> str:
    if how == "json":
        return json.dumps(content, ensure_ascii=False)[1:-1]
    if how == "ascii-json":
        return json.dumps(content)[1:-1]
    return content


@dataclass
class ChatTemplate:
    """A compiled chat template and where it came from (for ``/show`` and notices)."""

    source: str
    text: str
    bos_token: str = ""
    eos_token: str = ""

    def __post_init__(self) -> None:
        env = _budgeted_environment()
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        env.filters["tojson"] = _tojson
        try:
            self._compiled = env.from_string(self.text)
        except Exception as exc:  # any compile failure of untrusted code
            raise TemplateError(f"chat template does not compile: {exc}") from exc
        self.tool_format: ToolFormat = tool_format_of_template(self.text)

    def _render(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool,
        variables: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> str:
        context: dict[str, Any] = {
            **(variables or {}),
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "tools": [tool_dict(t) for t in tools] if tools else None,
        }
        try:
            with _time_budget(RENDER_SECONDS):
                rendered = str(self._compiled.render(**context))
        except TemplateError:
            raise
        except Exception as exc:  # a template may raise anything; it is untrusted code
            raise TemplateError(f"chat template failed: {exc}") from exc
        if len(rendered) > MAX_RENDERED:
            raise TemplateError(f"chat template produced more than {MAX_RENDERED} characters")
        return rendered

    def render(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        variables: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> list[PromptPiece]:
        """Render ``messages`` into pieces: template text and verbatim message text.

        ``variables`` are extra template variables (a thinking switch such as
        ``enable_thinking``); ``tools`` are offered to the model in its own format,
        or in the generic one (see engine/toolformat.py) when the template has none.
        """
        if self.tool_format == "generic":
            if tools or any(m.tool_calls or m.role == "tool" for m in messages):
                messages = generic_messages(messages, tools)
            tools = ()
        elif self.tool_format in ("llama3", "harmony"):
            # Llama 3's templates refuse a turn with several calls; gpt-oss's renders its
            # first call only. Both are told one call per turn, each beside its result.
            messages = one_call_per_turn(messages)
        tag = secrets.token_hex(8)
        # The control character makes any JSON encoding of a marker differ from it, so
        # a content the template writes as a JSON string is found as such.
        markers = [f"\ue000\x01{tag}:{i:06d}\ue001" for i in range(len(messages))]
        marked = [
            message_dict(m, mk if m.content else "", self.tool_format)
            for m, mk in zip(messages, markers, strict=True)
        ]
        rendered = self._render(marked, add_generation_prompt, variables, tools)
        pieces = self._split(rendered, messages, markers, tag)
        if pieces is None:
            return self._render_inline(messages, add_generation_prompt, variables, tools)
        return pieces

    def _split(
        self, rendered: str, messages: Sequence[Message], markers: Sequence[str], tag: str
    ) -> list[PromptPiece] | None:
        """The rendered text cut at the markers; None when the template transformed one."""
        pieces: list[PromptPiece] = []
        rest = rendered
        for index, (message, marker) in enumerate(zip(messages, markers, strict=True)):
            if not message.content:
                continue
            found = [(rest.find(form), form, how) for form, how in _encodings(marker)]
            found = [f for f in found if f[0] >= 0]
            if not found:
                # A template may drop a content (the text beside a tool call, say); one
                # it transformed would still show the marker's number.
                if f"{tag}:{index:06d}" in rendered:
                    return None
                continue
            at, form, how = min(found)
            before, after = rest[:at], rest[at + len(form) :]
            if any(f in after for f, _ in _encodings(marker)):
                return None
            if before:
                pieces.append(PromptPiece(before, special=True))
            pieces.append(PromptPiece(_encoded(message.content, how), special=False))
            rest = after
        if rest:
            pieces.append(PromptPiece(rest, special=True))
        return pieces

    def _render_inline(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool,
        variables: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] = (),
    ) -> list[PromptPiece]:
        # The template transforms or repeats contents, so markers cannot be
        # traced back. Render the real text: the template's own control tokens
        # must work, at the cost of parsing special-token text in the contents.
        plain = [message_dict(m, m.content, self.tool_format) for m in messages]
        rendered = self._render(plain, add_generation_prompt, variables, tools)
        return [PromptPiece(rendered, special=True)]


def prompt_text(pieces: Sequence[PromptPiece]) -> str:
    return "".join(piece.text for piece in pieces)
