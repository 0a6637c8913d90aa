"""Key bindings of the REPL's input line."""

from __future__ import annotations

from prompt_toolkit.filters import is_searching
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

BLOCK = '"""'


def block_is_open(text: str) -> bool:
    """True while a message started with triple quotes has not been closed."""
    stripped = text.strip()
    if not stripped.startswith(BLOCK):
        return False
    return len(stripped) < 2 * len(BLOCK) or not stripped.endswith(BLOCK)


def unwrap_block(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith(BLOCK) and stripped.endswith(BLOCK) and len(stripped) >= 6:
        return stripped[len(BLOCK) : -len(BLOCK)].strip("\n")
    return text


def repl_key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event: KeyPressEvent) -> None:
        event.current_buffer.insert_text("\n")

    @bindings.add("enter", filter=~is_searching)
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        if block_is_open(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    return bindings
