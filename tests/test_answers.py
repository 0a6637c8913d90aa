"""What an answer gives scripts at its edges: cut inside a character, ended by a signal."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from gptcli.engine.textstream import AnswerText
from tests.conftest import Gptcli, gptcli_executable
from tests.timing import patience, wait_until

pytestmark = pytest.mark.slow

SMILES = 'root ::= "😀😀😀😀😀😀"'  # each emoji is several tokens of this model


def test_a_character_cut_by_the_token_limit_is_withheld() -> None:
    text = AnswerText(())
    assert text.feed("a😀".encode()[:3]) == ("a", False)
    assert text.flush() == ""  # not "\ufffd"


@pytest.mark.parametrize("cut", ["2", "5"])
def test_ask_never_prints_half_a_character(gptcli: Gptcli, cut: str) -> None:
    for args in (("--plain",), ("--json",)):
        done = gptcli("ask", "--grammar", SMILES, "-n", cut, *args, "Smile.")
        assert done.returncode == 0, done.stderr
        assert "\ufffd" not in done.stdout
        text = json.loads(done.stdout)["text"] if "--json" in args else done.stdout.strip()
        assert set(text) <= {"😀"}
    saved = gptcli("ask", "--session", "cut", "--grammar", SMILES, "-n", cut, "Smile.")
    assert saved.returncode == 0, saved.stderr
    session = json.loads((gptcli.home / "data" / "sessions" / "cut.json").read_text())
    assert "\ufffd" not in session["messages"][-1]["content"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_json_interrupted_prints_its_object_with_the_text_so_far(
    gptcli: Gptcli, signum: int
) -> None:
    story = "Write a very long story about a dragon."
    argv = ["ask", "--json", "--session", "j", "-n", "3000", "--ignore-eos", story]
    child = subprocess.Popen(
        [gptcli_executable(), *argv],
        env=gptcli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    session = gptcli.home / "data" / "sessions" / "j.json"
    # The question is saved before the answer starts: from then on it is answering.
    wait_until(lambda: session.exists() and story in session.read_text(), 60, "the answer")
    time.sleep(patience(0.5))
    child.send_signal(signum)
    out, err = child.communicate(timeout=patience(60))
    assert child.returncode == 128 + signum, err
    result = json.loads(out)
    assert result["finish_reason"] == "interrupted"
    saved = json.loads(session.read_text())["messages"][-1]
    assert saved["finish_reason"] == "interrupted"
    assert saved["content"] == result["text"]
    assert result["usage"]["completion_tokens"] >= 1
