"""How hard the suite tries: a quick pass by default, the deep one on request.

The loops that look for rare failures (kill a writer at random moments, fuzz a parser,
let hypothesis draw examples) run a few rounds in every run of the suite, enough to
prove the mechanism each time; ``GPTCLI_DEEP_TESTS=1`` runs the counts that hunt for
the rare case. A test's own variable (``GPTCLI_FUZZ_EXAMPLES``...) overrides both.
"""

from __future__ import annotations

import os

DEEP = os.environ.get("GPTCLI_DEEP_TESTS", "") not in ("", "0")


def rounds(quick: int, deep: int, variable: str | None = None) -> int:
    """``quick`` rounds, ``deep`` under GPTCLI_DEEP_TESTS=1, or what ``variable`` says."""
    if variable is not None and os.environ.get(variable):
        return int(os.environ[variable])
    return deep if DEEP else quick
