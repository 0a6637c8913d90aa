"""Counts in messages, worded as a person writes them."""

from __future__ import annotations


def plural(count: int, singular: str, many: str | None = None) -> str:
    """``count`` with thousands separators and the noun that agrees with it: "1 turn",
    "2 turns", "3,291 entries" (``many`` where adding "s" is wrong)."""
    noun = singular if count == 1 else (many or f"{singular}s")
    return f"{count:,} {noun}"
