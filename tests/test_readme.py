"""The README's two set-up commands stay true to what CI runs, and what the docs show works.

Every ``gptcli`` command in a ```sh block of the README or docs/ names a real subcommand and only
its options; every toml block loads as a config file; every link inside the repository resolves.
"""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
MANUAL = [ROOT / "README.md", *DOCS]
LINKED = [*MANUAL, ROOT / "RELIABILITY.md", ROOT / "CHANGELOG.md"]
SEPARATORS = set(";&|()\n")
REDIRECTIONS = ("<", ">")


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


def toml_blocks(path: Path) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(), re.DOTALL)


def test_readme_keeps_config_examples() -> None:
    assert len(toml_blocks(ROOT / "README.md")) >= 2


@pytest.mark.parametrize("path", MANUAL, ids=lambda path: path.name)
def test_config_examples_load(tmp_path: Path, path: Path) -> None:
    from gptcli.config import load_config_file, resolve_settings

    for number, block in enumerate(toml_blocks(path)):
        example = tmp_path / f"example{number}.toml"
        example.write_text(block)
        values = load_config_file(example)  # raises on anything gptcli would refuse
        assert values
        for name in values.get("profiles", {}):
            assert resolve_settings(values, {}, {"profile": name}).backend == "openai"


def without_comments(script: str) -> str:
    """The script with its ``# comments`` removed, as the shell reads them: outside quotes, at
    the start of a word. Continued lines are joined."""
    out: list[str] = []
    quote = ""
    index = 0
    script = script.replace("\\\n", " ")
    while index < len(script):
        char = script[index]
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                out.append(char)
                index += 1
                char = script[index]
        elif char in "'\"":
            quote = char
        elif char == "#" and (not out or out[-1].isspace()):
            while index < len(script) and script[index] != "\n":
                index += 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


def simple_commands(script: str) -> list[list[str]]:
    """The words of each simple command of a shell script, redirections left out."""
    lexer = shlex.shlex(without_comments(script), posix=True, punctuation_chars=";&|<>()\n")
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True  # a word ends at blank space or an operator, as in the shell
    lexer.commenters = ""
    commands: list[list[str]] = [[]]
    skip_next = False
    for token in lexer:
        if token and set(token) <= SEPARATORS | {"<", ">"} and token.startswith(REDIRECTIONS):
            skip_next = True
        elif token and set(token) <= SEPARATORS | {"<", ">"}:
            commands.append([])
        elif skip_next:
            skip_next = False
        else:
            commands[-1].append(token)
    return [command for command in commands if command]


def gptcli_invocations(path: Path) -> list[list[str]]:
    """The arguments of every gptcli command in the file's ```sh blocks."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.DOTALL):
        for words in simple_commands(block):
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]  # VAR=value before the command
            if words and words[0].rsplit("/", 1)[-1] == "gptcli":
                found.append(words[1:])
    return found


@functools.cache
def gptcli_command() -> Any:
    """The click command behind the console script, built in-process (no model is loaded).
    Typer has its own copy of click: its groups and options are recognised by what they have."""
    import typer

    from gptcli.cli.app import app

    return typer.main.get_command(app)


def check_invocation(args: list[str]) -> None:
    """Raise AssertionError unless ``gptcli ARGS`` names a subcommand and only its options."""
    from gptcli.cli.app import route

    command = gptcli_command()
    help_options = dict.fromkeys(command.context_settings.get("help_option_names", ["--help"]))
    path = ["gptcli"]
    args = route(list(args), interactive=True)
    while args:
        word = args.pop(0)
        if word == "--":
            return
        if word.startswith("-") and word != "-":
            name, _, attached = word.partition("=")
            if not name.startswith("--") and len(name) > 2:
                name, attached = name[:2], name[2:]  # -n5
            options: dict[str, Any] = {
                opt: param
                for param in command.params
                if param.param_type_name == "option"
                for opt in (*param.opts, *param.secondary_opts)
            }
            options.update(help_options)
            assert name in options, f"{' '.join(path)} has no option {name}"
            param = options[name]
            takes_value = param is not None and not param.is_flag and not param.count
            if takes_value and not attached:
                args = args[param.nargs :] if param.nargs > 0 else args
            continue
        if hasattr(command, "commands"):
            assert word in command.commands, f"{' '.join(path)} has no command {word!r}"
            command = command.commands[word]
            path.append(word)
        # else: a positional argument


def documented_invocations() -> list[tuple[str, list[str]]]:
    return [(path.name, args) for path in MANUAL for args in gptcli_invocations(path)]


def test_the_shell_parser_finds_the_gptcli_part() -> None:
    script = (
        'cat a.txt | gptcli ask -q "x # not a comment" > out.txt   # a comment: gptcli ask --nope\n'
        "VAR=1 .venv/bin/gptcli sessions export trip \\\n  --format md\n"
        'echo "it\'s" |\n'
        "  gptcli ask -t 0 '{\"a\":\n 1}' \"$(printf 'w %.0s' $(seq 3))\" || status=$?\n"
    )
    found = [words for words in simple_commands(script) if "gptcli" in words[0] or "VAR=1" in words]
    assert found == [
        ["gptcli", "ask", "-q", "x # not a comment"],
        ["VAR=1", ".venv/bin/gptcli", "sessions", "export", "trip", "--format", "md"],
        ["gptcli", "ask", "-t", "0", '{"a":\n 1}', "$(printf 'w %.0s' $(seq 3))"],
    ]


def test_the_check_rejects_what_does_not_exist() -> None:
    with pytest.raises(AssertionError, match="no command 'frobnicate'"):
        check_invocation(["sessions", "frobnicate"])
    with pytest.raises(AssertionError, match="no option --no-such-flag"):
        check_invocation(["ask", "--no-such-flag", "hi"])
    with pytest.raises(AssertionError, match="no option -Z"):
        check_invocation(["chat", "-Z"])
    check_invocation(["ask", "-n5", "--seed=1", "-m", "-", "hi"])  # values are not options


def test_the_manual_shows_gptcli_commands() -> None:
    invocations = documented_invocations()
    assert len(invocations) >= 50
    assert {"ask", "chat", "batch", "sessions", "models", "tools", "roles"} <= {
        args[0] for _, args in invocations if args
    }


@pytest.mark.parametrize(
    ("where", "args"),
    documented_invocations(),
    ids=lambda value: value if isinstance(value, str) else " ".join(value)[:60],
)
def test_every_documented_command_is_accepted(where: str, args: list[str]) -> None:
    check_invocation(args)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {slug(title) for title in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", LINKED, ids=lambda path: path.name)
def test_links_inside_the_repository_resolve(path: Path) -> None:
    for target in links(path):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} leaves the repository"
        assert resolved.exists(), f"{path.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(resolved), f"{path.name}: no heading for {target}"


def test_reliability_links_only_inside_the_repository() -> None:
    text = (ROOT / "RELIABILITY.md").read_text()
    assert not re.search(r"https?://", text)
    assert "../" not in " ".join(links(ROOT / "RELIABILITY.md"))


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {target.partition("#")[0] for target in links(ROOT / "README.md")}
    assert {f"docs/{page.name}" for page in DOCS} <= linked


def test_the_readme_stays_a_manual() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 350
