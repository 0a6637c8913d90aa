"""The README's two set-up commands stay true to what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text, flags=re.DOTALL)[:2]


def test_readme_opens_with_two_commands() -> None:
    start, test = readme_commands()
    assert start.startswith("python3 -m venv .venv && ")
    assert "pip install ." in start
    assert start.endswith(".venv/bin/gptcli")
    assert test.startswith("python3 -m venv .venv && ")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    _, test = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci
