"""Shell integration: completions, roles, `cmd`, --jsonl, -q, and the README's script examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gptcli.conversation.shellcmd import clean_command, warnings_for
from gptcli.store.sessions import SessionStore, StoredMessage
from tests.conftest import Gptcli, gptcli_executable
from tests.terminal import Terminal

ROOT = Path(__file__).resolve().parent.parent
FILES = {"bash": "gptcli.bash", "zsh": "_gptcli", "fish": "gptcli.fish"}


@pytest.mark.parametrize("shell", sorted(FILES))
def test_checked_in_completions_are_current(gptcli: Gptcli, shell: str) -> None:
    result = gptcli("completions", "show", shell)
    assert result.returncode == 0
    assert result.stdout == (ROOT / "completions" / FILES[shell]).read_text()


def _bash_complete(gptcli: Gptcli, *words: str) -> list[str]:
    script = (
        f"source {ROOT / 'completions' / 'gptcli.bash'}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in ('gptcli', *words))})\n"
        f"COMP_CWORD={len(words)}\n"
        "_gptcli_completion gptcli\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**gptcli.env, "PATH": f"{Path(gptcli_executable()).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_commands_options_and_names(gptcli: Gptcli) -> None:
    store = SessionStore(gptcli.home / "data")
    store.update("trip-paris", lambda s: s.messages.append(StoredMessage("user", "hi")), True)
    assert "sessions" in _bash_complete(gptcli, "ses")
    assert "--temperature" in _bash_complete(gptcli, "ask", "--tem")
    assert _bash_complete(gptcli, "sessions", "show", "trip") == ["trip-paris"]
    assert _bash_complete(gptcli, "chat", "--resume", "tr") == ["trip-paris"]
    assert _bash_complete(gptcli, "ask", "-m", "smo") == [
        "smollm2",
        "smollm2:1.7b",
        "smollm2:135m",
        "smollm2:360m",
        "smolvlm:500m",
    ]  # the bundled model, then the catalogue's short names
    assert _bash_complete(gptcli, "ask", "--role", "tu") == ["tutor"]


def test_completions_install(gptcli: Gptcli, tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": "", "XDG_CONFIG_HOME": ""}
    for shell, target in [
        ("bash", ".local/share/bash-completion/completions/gptcli"),
        ("fish", ".config/fish/completions/gptcli.fish"),
        ("zsh", ".zfunc/_gptcli"),
    ]:
        done = gptcli("completions", "install", shell, env=env)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / target).read_text() == (ROOT / "completions" / FILES[shell]).read_text()


def test_roles_round_trip_and_placeholders(gptcli: Gptcli) -> None:
    listed = gptcli("roles", "list").stdout
    for name in ("assistant", "support", "tutor", "summarizer", "storyteller", "shell"):
        assert name in listed
    added = gptcli(
        "roles", "add", "pirate", "-s", "You are a pirate who loves {food}.", "-t", "0.3"
    )
    assert added.returncode == 0, added.stderr
    shown = gptcli("roles", "show", "pirate").stdout
    assert "temperature: 0.3" in shown and "{food}" in shown
    assert gptcli("roles", "add", "pirate", "-s", "x").returncode == 2  # exists
    missing = gptcli("ask", "-r", "pirate", "hello")
    assert missing.returncode == 2
    assert "needs --var food=..." in missing.stderr
    assert gptcli("ask", "-r", "nobody", "hi").returncode == 2
    assert gptcli("roles", "rm", "pirate").returncode == 0
    assert gptcli("roles", "rm", "tutor").returncode == 2  # built-ins stay


@pytest.mark.slow
def test_role_sets_the_system_prompt_and_options(gptcli: Gptcli) -> None:
    result = gptcli(
        "ask",
        "--session",
        "help",
        "-r",
        "support",
        "--var",
        "product=Acme Router X2",
        "-n",
        "10",
        "My router blinks red.",
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((gptcli.home / "data" / "sessions" / "help.json").read_text())
    assert "Acme Router X2" in saved["system"]
    assert saved["messages"][1]["options"]["temperature"] == 0.3  # the role's default
    flag = gptcli(
        "ask",
        "--session",
        "h2",
        "-r",
        "support",
        "--var",
        "product=X",
        "-t",
        "0.7",
        "-n",
        "5",
        "Hi",
    )
    assert flag.returncode == 0
    saved = json.loads((gptcli.home / "data" / "sessions" / "h2.json").read_text())
    assert saved["messages"][1]["options"]["temperature"] == 0.7  # flags win over the role


def test_command_cleaning_and_warnings(tmp_path: Path) -> None:
    assert clean_command("```bash\nls -la\n```\nThis lists files.") == "ls -la"
    assert clean_command("$ du -sh *") == "du -sh *"
    assert clean_command("`pwd`") == "pwd"
    assert clean_command("The command is:\n\n```\nfind . -size +1G\n") == "find . -size +1G"
    assert clean_command("# a comment\nls") == "ls"
    assert clean_command("```\n```") == ""
    assert warnings_for("rm -rf build/") == ["removes files recursively or by force"]
    assert warnings_for("sudo apt upgrade")
    assert warnings_for("curl -fsSL https://x.sh | sh")
    assert warnings_for("dd if=/dev/zero of=/dev/sda")
    assert warnings_for("mkfs.ext4 /dev/sdb1")
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    assert warnings_for("echo hi > notes.txt", cwd=tmp_path) == [
        "overwrites the existing file notes.txt"
    ]
    assert warnings_for("echo hi > new.txt", cwd=tmp_path) == []
    assert warnings_for("ls -la | grep x") == []


@pytest.mark.slow
def test_cmd_without_a_terminal_only_prints(gptcli: Gptcli, tmp_path: Path) -> None:
    # A fixed request in a fresh directory: the model's answer must not depend on
    # pytest's numbered temporary paths.
    work = tmp_path / "work"
    work.mkdir()
    result = gptcli("cmd", "make an empty file called created-by-cmd", cwd=work)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and "created-by-cmd" in result.stdout
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("request_text", ["", "  \t "])
def test_cmd_refuses_an_empty_request(gptcli: Gptcli, request_text: str) -> None:
    result = gptcli("cmd", request_text)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "gptcli: error: the request is empty: say what the command should do\n"


@pytest.mark.slow
def test_cmd_menu_abort_edit_execute_and_warning(gptcli: Gptcli, tmp_path: Path) -> None:
    env = {**gptcli.env, "TERM": "xterm", "SHELL": "/bin/bash"}
    out = tmp_path / "ran.txt"
    term = Terminal([gptcli_executable(), "cmd", "list the files here"], env)
    try:
        term.wait_text("[a]bort?")
        term.type_line("a")
        term.wait_text("aborted; nothing was run")
        assert term.wait_exit() == 0
    finally:
        term.close()
    term = Terminal([gptcli_executable(), "cmd", "list the files here"], env)
    try:
        term.wait_text("[a]bort?")
        term.type_line("d")
        term.wait_text("edit:")
        term.send("\x15")  # Ctrl-U clears the suggested command
        term.type_line(f"rm -rf {tmp_path}/nothing-here; echo gptcli-ok > {out}; exit 3")
        term.wait_text("warning: this command removes files recursively or by force")
        term.type_line("e")
        assert term.wait_exit() == 3  # gptcli exits with the command's status
    finally:
        term.close()
    assert out.read_text() == "gptcli-ok\n"


@pytest.mark.slow
def test_jsonl_events(gptcli: Gptcli) -> None:
    question = ("-t", "0", "-n", "30", "Name the capital city of France.")
    result = gptcli("ask", "--jsonl", *question)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-2:] == ["usage", "end"]
    assert set(kinds[1:-2]) == {"delta"}
    text = "".join(e["text"] for e in events if e["type"] == "delta")
    assert text + "\n" == gptcli("ask", *question).stdout
    assert events[-2]["completion_tokens"] > 0
    assert events[-1]["finish_reason"] == "stop"


@pytest.mark.slow
def test_quiet_keeps_only_errors(fresh_gptcli: Gptcli) -> None:
    quiet = fresh_gptcli("ask", "-q", "-t", "0", "-n", "5", "Repeat.", input=b"caf\xe9")
    assert quiet.returncode == 0
    assert quiet.stderr == ""  # no CPU-check note, no UTF-8 warning
    error = fresh_gptcli("ask", "-q", "-m", "/no/such.gguf", "hi")
    assert error.returncode == 3
    assert error.stderr.startswith("gptcli: error:")


def readme_script_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use in scripts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(3))
def test_readme_script_examples_run(gptcli: Gptcli, tmp_path: Path, index: int) -> None:
    examples = readme_script_examples()
    assert len(examples) == 3
    env = {**gptcli.env, "PATH": f"{Path(gptcli_executable()).parent}:{os.environ['PATH']}"}
    env["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", examples[index]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    if index == 0:
        summaries = sorted(tmp_path.glob("notes/*.summary"))
        assert len(summaries) == 2 and all(p.read_text().strip() for p in summaries)
    if index == 1:
        assert done.stdout.strip()  # the customer, from JSON that validated
    if index == 2:
        assert "missing model: exit 3" in done.stdout
        assert "too long for the context: exit 4" in done.stdout
        assert json.loads(done.stdout.splitlines()[-1])["type"] == "end"
