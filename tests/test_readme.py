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


def test_readme_config_examples_load(tmp_path: Path) -> None:
    from gptcli.config import load_config_file, resolve_settings

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert len(blocks) >= 2
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.toml"
        path.write_text(block)
        values = load_config_file(path)  # raises on anything gptcli would refuse
        assert values
        for name in values.get("profiles", {}):
            assert resolve_settings(values, {}, {"profile": name}).backend == "openai"
