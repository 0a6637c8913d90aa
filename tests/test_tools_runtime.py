"""The tools runtime: built-ins, --functions files, argument checks, caps and clean results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gptcli.config import ToolSettings
from gptcli.engine.base import ToolCall
from gptcli.errors import UsageError
from gptcli.tools import Toolbox, ToolOutput
from gptcli.tools.calc import CalcError, calculate, format_number
from gptcli.tools.functions import load_functions
from tests.timing import patience, wait_until


def run(box: Toolbox, name: str, **arguments: Any) -> ToolOutput:
    return box.run(ToolCall("call-1", name, json.dumps(arguments)))


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# calc


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("2 ** 10", "1024"),
        ("-2 ** 2", "-4"),
        ("7 // 2 + 7 % 3", "4"),
        ("0.1 + 0.2", "0.3"),
        ("10 / 4", "2.5"),
        ("sqrt(16) + log(8, 2)", "7.0"),
        ("round(pi, 4)", "3.1416"),
        ("cos(0) + +1", "2.0"),
        ("factorial(20)", "2432902008176640000"),
        ("2 ** -1", "0.5"),
    ],
)
def test_calc_evaluates_arithmetic(expression: str, value: str) -> None:
    assert format_number(calculate(expression)) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("__import__('os').system('true')", "Call is not allowed"),
        ("__import__('os')", "unknown function '__import__'"),
        ("sqrt(1, 2)", "sqrt: "),
        ("(1).real", "Attribute is not allowed"),
        ("[1, 2]", "List is not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("1 if 1 else 2", "not allowed"),
        ("sqrt(x=4)", "not allowed"),
        ("9 ** 9 ** 9", "too large"),
        ("10 ** 5000", "too large"),
        ("2.0 ** 100000", "too large"),
        ("factorial(100000)", "0 to 1000"),
        ("1 / 0", "division by zero"),
        ("(-8) ** 0.5", "not a real number"),
        ("2 ^ 3", "write 2"),
        ("(" * 200 + "1" + ")" * 200, "nested too deeply"),
        ("-" * 500 + "1", "nested too deeply"),
        ("1 +" * 400 + "1", "longer than"),
        ("1 +", "not a valid"),
    ],
)
def test_calc_refuses_what_is_not_bounded_arithmetic(expression: str, reason: str) -> None:
    with pytest.raises(CalcError, match=reason):
        calculate(expression)


def test_calc_tool_reports_errors_as_outputs() -> None:
    with Toolbox.enable(["calc"], [], ToolSettings()) as box:
        assert run(box, "calc", expression="6 * 7") == ToolOutput("42")
        domain = run(box, "calc", expression="sqrt(-1)")
        assert domain == ToolOutput("sqrt: math domain error", error=True)


# read_file and list_dir


def test_read_file_reads_text_and_line_ranges(in_tmp: Path) -> None:
    (in_tmp / "notes.txt").write_text("one\ntwo\nthree\n")
    with Toolbox.enable(["read_file"], [], ToolSettings()) as box:
        assert run(box, "read_file", path="notes.txt").text == "one\ntwo\nthree\n"
        assert run(box, "read_file", path="notes.txt", start_line=2).text == "two\nthree\n"
        assert run(box, "read_file", path="notes.txt", start_line=2, end_line=2).text == "two\n"
        beyond = run(box, "read_file", path="notes.txt", start_line=9)
        assert beyond.error and "has 3 lines" in beyond.text
        missing = run(box, "read_file", path="nope.txt")
        assert missing.error and "no such file" in missing.text


def test_read_file_stays_inside_the_roots(in_tmp: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    (in_tmp / "escape").symlink_to(secret)
    (in_tmp / "sub").mkdir()
    with Toolbox.enable(["read_file", "list_dir"], [], ToolSettings()) as box:
        for path in ("../secret.txt", str(secret), "escape", "sub/../../secret.txt"):
            output = run(box, "read_file", path=path)
            assert output.error, path
            assert "outside the directories tools may read" in output.text
            assert "private" not in output.text
        outside = run(box, "list_dir", path="..")
        assert outside.error and "outside" in outside.text
    with Toolbox.enable(["read_file"], [], ToolSettings(roots=(tmp_path,))) as box:
        assert run(box, "read_file", path="escape").text == "private"


def test_read_file_refuses_binary_and_undecodable_files(in_tmp: Path) -> None:
    (in_tmp / "image.bin").write_bytes(b"PNG\x00\x01\x02")
    (in_tmp / "latin1.txt").write_bytes("café".encode("latin-1"))
    os.mkfifo(in_tmp / "fifo")
    with Toolbox.enable(["read_file"], [], ToolSettings()) as box:
        assert "binary file" in run(box, "read_file", path="image.bin").text
        assert "not UTF-8 text" in run(box, "read_file", path="latin1.txt").text
        assert "not a regular file" in run(box, "read_file", path="fifo").text
        assert run(box, "read_file", path=".").error


def test_results_are_capped_with_a_note(in_tmp: Path) -> None:
    (in_tmp / "big.txt").write_text("x" * 5000)
    with Toolbox.enable(["read_file"], [], ToolSettings(max_result_chars=1000)) as box:
        output = run(box, "read_file", path="big.txt")
    assert output.truncated and not output.error
    assert output.text.startswith("x" * 1000 + "\n")
    assert output.text.endswith("[truncated: showed 1000 of 5000 characters]")


def test_list_dir_shows_types_and_sizes(in_tmp: Path) -> None:
    (in_tmp / "b.txt").write_text("hello")
    (in_tmp / "a").mkdir()
    (in_tmp / "link").symlink_to("b.txt")
    with Toolbox.enable(["list_dir"], [], ToolSettings()) as box:
        listing = run(box, "list_dir").text.splitlines()
        assert listing == ["dir   a/", "file  b.txt (5 bytes)", "link  link -> b.txt"]
        assert run(box, "list_dir", path="b.txt").error


# shell


def test_shell_reports_status_and_output(in_tmp: Path) -> None:
    with Toolbox.enable(["shell"], [], ToolSettings()) as box:
        assert box.get("shell") is not None
        assert not box.tools[0].read_only
        output = run(box, "shell", command="echo out; echo err >&2; cat; pwd; exit 3")
    assert not output.error
    assert output.text.splitlines() == ["exit status: 3", "out", "err", str(in_tmp)]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def test_shell_timeout_kills_the_process_group(in_tmp: Path) -> None:
    command = "echo $$ > pids; sleep 300 & echo $! >> pids; sleep 300"
    with Toolbox.enable(["shell"], [], ToolSettings(timeout=1)) as box:
        started = time.monotonic()
        output = run(box, "shell", command=command)
        assert time.monotonic() - started < patience(5)
    assert output.error and "timed out after 1 s" in output.text
    pids = [int(line) for line in (in_tmp / "pids").read_text().split()]
    assert len(pids) == 2
    wait_until(lambda: all(_gone(pid) for pid in pids), 5, "the shell and its job to die")


def test_shell_output_is_cleaned_of_escapes(in_tmp: Path) -> None:
    command = r"printf 'a\033[31mred\033[0m\033]0;title\007b\tc\r\nd\010\001e\n'"
    with Toolbox.enable(["shell"], [], ToolSettings()) as box:
        output = run(box, "shell", command=command)
    assert output.text == "exit status: 0\naredb\tc\nde"


# time


def test_time_tells_the_zone() -> None:
    with Toolbox.enable(["time"], [], ToolSettings()) as box:
        assert "time zone Asia/Tokyo (UTC+09:00)" in run(box, "time", zone="Asia/Tokyo").text
        assert "unknown time zone" in run(box, "time", zone="Mars/Base").text


# arguments


def test_arguments_are_parsed_and_validated() -> None:
    with Toolbox.enable(["calc", "time"], [], ToolSettings()) as box:
        cases = {
            "{not json": "not valid JSON",
            "[1]": "must be a JSON object",
            "{}": "'expression' is a required property",
            '{"expression": 1}': "expression: 1 is not of type 'string'",
            '{"expression": "1", "extra": 2}': "Additional properties are not allowed",
        }
        for text, reason in cases.items():
            output = box.run(ToolCall("c", "calc", text))
            assert output.error and reason in output.text, text
            assert "\n" not in output.text
        assert box.run(ToolCall("c", "time", "")).error is False  # no arguments: {}
        unknown = box.run(ToolCall("c", "nope", "{}"))
        assert unknown.error and "unknown tool 'nope'" in unknown.text


def test_unknown_names_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown tool 'rm'"):
        Toolbox.enable(["rm"], [], ToolSettings())
    with pytest.raises(UsageError, match=r"unknown MCP server 'x'.*\[mcp.servers.x\]"):
        Toolbox.enable(["mcp:x"], [], ToolSettings())


# --functions

FUNCTIONS = '''
"""Tools for the tests."""

import json
from json import dumps
from typing import Literal, Optional

READ_ONLY = {"lookup"}


def lookup(word: str, limit: int = 3, exact: bool = False) -> list[str]:
    """Find words like WORD.

    Searches the word list.

    Args:
        word: The word to look for.
        limit: How many words to return,
            at most.
    """
    return [word] * limit


def convert(amount: float, unit: Literal["km", "mi"], tags: Optional[list[str]] = None,
            extra: dict[str, int] | None = None) -> dict[str, float]:
    """Convert an amount."""
    return {"km": amount if unit == "km" else amount * 1.609}


def shout(text: str) -> str:
    """Raise on purpose."""
    raise ValueError("no shouting")


def slow(seconds: float) -> str:
    """Sleep."""
    import time
    time.sleep(seconds)
    return "done"


def _helper(x):
    return x
'''


def test_functions_become_tools_with_schemas(tmp_path: Path) -> None:
    path = tmp_path / "funcs.py"
    path.write_text(FUNCTIONS)
    tools = {tool.spec.name: tool for tool in load_functions(path)}
    assert list(tools) == ["lookup", "convert", "shout", "slow"]  # not dumps, not _helper
    lookup = tools["lookup"]
    assert lookup.read_only and not tools["convert"].read_only
    assert lookup.source == f"functions: {path}"
    assert lookup.spec.description == "Find words like WORD."
    assert lookup.spec.parameters == {
        "type": "object",
        "properties": {
            "word": {"type": "string", "description": "The word to look for."},
            "limit": {
                "type": "integer",
                "description": "How many words to return, at most.",
                "default": 3,
            },
            "exact": {"type": "boolean", "default": False},
        },
        "required": ["word"],
        "additionalProperties": False,
    }
    convert = tools["convert"].spec.parameters
    assert convert["required"] == ["amount", "unit"]
    assert convert["properties"]["unit"] == {"enum": ["km", "mi"], "type": "string"}
    assert convert["properties"]["tags"] == {
        "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
        "default": None,
    }
    assert convert["properties"]["extra"]["anyOf"][0] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
    }


def test_functions_run_with_results_errors_and_timeouts(tmp_path: Path) -> None:
    path = tmp_path / "funcs.py"
    path.write_text(FUNCTIONS)
    with Toolbox.enable([], [path], ToolSettings(timeout=0.5)) as box:
        assert run(box, "lookup", word="hi", limit=2).text == '["hi", "hi"]'
        assert run(box, "convert", amount=2, unit="km").text == '{"km": 2}'
        assert run(box, "shout", text="x") == ToolOutput("ValueError: no shouting", error=True)
        bad = run(box, "convert", amount=1, unit="yards")
        assert bad.error and "unit: 'yards' is not one of ['km', 'mi']" in bad.text
        started = time.monotonic()
        slow = run(box, "slow", seconds=30)
        assert slow.error and "timed out after 0.5 s" in slow.text
        assert time.monotonic() - started < patience(5)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(x):\n    '''Doc.'''\n", "function f: parameter 'x' has no type annotation"),
        ("def f(x: set[int]) -> None:\n    '''Doc.'''\n", "parameter 'x': unsupported type"),
        ("def f(*xs: int) -> None:\n    '''Doc.'''\n", "function f: *xs"),
        ("def f(x: int) -> None:\n    pass\n", "function f: no docstring"),
        ("def f(:\n", "line 1"),
        ("raise RuntimeError('boom\\nmore')\n", "RuntimeError: boom more"),
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
        (
            "READ_ONLY = {'g'}\ndef f() -> None:\n    '''Doc.'''\n",
            "READ_ONLY names no function 'g'",
        ),
        ("X = 1\n", "defines no public function"),
    ],
)
def test_unusable_functions_files_are_one_line_errors(
    tmp_path: Path, source: str, message: str
) -> None:
    path = tmp_path / "bad.py"
    path.write_text(source)
    with pytest.raises(UsageError) as caught:
        Toolbox.enable([], [path], ToolSettings())
    assert message in caught.value.message
    assert caught.value.message.startswith(f"--functions {path}")
    assert "\n" not in caught.value.message
    with pytest.raises(UsageError, match="no such file"):
        Toolbox.enable([], [tmp_path / "missing.py"], ToolSettings())


def test_name_collisions_between_fixed_tools_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "funcs.py"
    path.write_text("def calc(expression: str) -> str:\n    '''Mine.'''\n    return expression\n")
    with pytest.raises(UsageError, match="two tools are named 'calc'"):
        Toolbox.enable(["calc"], [path], ToolSettings())


def test_importing_the_package_stays_light() -> None:
    heavy = ("mcp", "jsonschema", "gptcli.tools.mcpclient")
    code = f"import sys, gptcli.tools; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert done.stdout.strip() == "[]"
