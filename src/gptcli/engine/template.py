"""Chat templates: the model's own Jinja template, rendered in a sandbox.

A template in a model file is untrusted code, so it runs only in Jinja's
immutable sandbox. Message contents are rendered as unique markers and then
split back out, so the tokenizer can treat template text (which holds the
special tokens) and user text (which must never become special tokens)
differently.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gptcli.engine.base import Message

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
        try:
            self._compiled = env.from_string(self.text)
        except Exception as exc:  # any compile failure of untrusted code
            raise TemplateError(f"chat template does not compile: {exc}") from exc

    def _render(
        self,
        messages: Sequence[dict[str, str]],
        add_generation_prompt: bool,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        context: dict[str, Any] = {
            **(variables or {}),
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "tools": None,
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
    ) -> list[PromptPiece]:
        """Render ``messages`` into pieces: template text and verbatim message text.

        ``variables`` are extra template variables (a thinking switch such as
        ``enable_thinking``).
        """
        tag = secrets.token_hex(8)
        markers = [f"\ue000{tag}:{i}\ue001" for i in range(len(messages))]
        marked = [{"role": m.role, "content": mk} for m, mk in zip(messages, markers, strict=True)]
        rendered = self._render(marked, add_generation_prompt, variables)
        pieces: list[PromptPiece] = []
        rest = rendered
        for message, marker in zip(messages, markers, strict=True):
            before, found, after = rest.partition(marker)
            if not found or marker in after:
                return self._render_inline(messages, add_generation_prompt, variables)
            if before:
                pieces.append(PromptPiece(before, special=True))
            if message.content:
                pieces.append(PromptPiece(message.content, special=False))
            rest = after
        if rest:
            pieces.append(PromptPiece(rest, special=True))
        return pieces

    def _render_inline(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool,
        variables: Mapping[str, Any] | None = None,
    ) -> list[PromptPiece]:
        # The template transforms or repeats contents, so markers cannot be
        # traced back. Render the real text: the template's own control tokens
        # must work, at the cost of parsing special-token text in the contents.
        plain = [{"role": m.role, "content": m.content} for m in messages]
        rendered = self._render(plain, add_generation_prompt, variables)
        return [PromptPiece(rendered, special=True)]


def prompt_text(pieces: Sequence[PromptPiece]) -> str:
    return "".join(piece.text for piece in pieces)
