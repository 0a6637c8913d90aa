"""What an answer gives scripts at its edges: cut inside a character, ended by a signal."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gptcli.engine.textstream import AnswerText
from tests.conftest import Gptcli, gptcli_executable
from tests.timing import patience, wait_until

pytestmark = pytest.mark.slow

SMILES = 'root ::= "😀😀😀😀😀😀"'  # each emoji is several tokens of this model
JAPANESE = "Translate to Japanese: good morning, thank you"  # its kana are cut by some limits


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


def test_jsonl_and_batch_never_print_half_a_character(gptcli: Gptcli, tmp_path: Path) -> None:
    """A token limit that ends inside a character leaves the text as it was a token earlier,
    in batch records and in --jsonl's deltas, which add up to --json's text."""
    limits = range(1, 9)
    items = [{"id": n, "prompt": JAPANESE, "temperature": 0, "max_tokens": n} for n in limits]
    source = tmp_path / "cuts.jsonl"
    source.write_text("".join(json.dumps(item) + "\n" for item in items))
    done = gptcli("batch", str(source), "--parallel", "1")
    assert done.returncode == 0, done.stderr
    records = {r["id"]: r for r in map(json.loads, done.stdout.splitlines())}
    texts = [records[n]["text"] for n in limits]
    assert all("\ufffd" not in text for text in texts)
    assert all(records[n]["finish_reason"] == "length" for n in limits)
    cuts = [n for n in limits[1:] if texts[n - 1] == texts[n - 2]]
    assert cuts, texts  # the prompt must make the model cut a character somewhere
    question = ("-t", "0", "-n", str(cuts[0]), JAPANESE)
    events = [json.loads(line) for line in gptcli("ask", "--jsonl", *question).stdout.splitlines()]
    deltas = "".join(e["text"] for e in events if e["type"] == "delta")
    assert "\ufffd" not in deltas
    assert deltas == json.loads(gptcli("ask", "--json", *question).stdout)["text"]


@pytest.mark.parametrize(
    ("signum", "session"),
    [(signal.SIGTERM, "j"), (signal.SIGINT, "j"), (signal.SIGHUP, None)],
)
def test_json_interrupted_prints_its_object_with_the_text_so_far(
    gptcli: Gptcli, signum: int, session: str | None
) -> None:
    story = "Write a very long story about a dragon."
    argv = ["ask", "--json", "-n", "3000", "--ignore-eos", story]
    if not session:  # nothing to watch: how long does one token take to come, here and now?
        began = time.monotonic()
        assert gptcli("ask", "--json", "-n", "1", story).returncode == 0
        startup = time.monotonic() - began
    child = subprocess.Popen(
        [gptcli_executable(), *argv, *(["--session", session] if session else [])],
        env=gptcli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    saved_file = gptcli.home / "data" / "sessions" / f"{session}.json"
    if session:
        # The question is saved before the answer starts: from then on it is answering.
        wait_until(lambda: saved_file.exists() and story in saved_file.read_text(), 60, "answer")
        time.sleep(patience(0.5))
    else:
        time.sleep(2 * startup + patience(0.2))  # well into the answer, on a machine this busy
    child.send_signal(signum)
    out, err = child.communicate(timeout=patience(60))
    assert child.returncode == 128 + signum, err
    result = json.loads(out)
    assert result["finish_reason"] == "interrupted"
    assert result["text"].strip()
    assert result["usage"]["completion_tokens"] >= 1
    if session:
        saved = json.loads(saved_file.read_text())["messages"][-1]
        assert saved["finish_reason"] == "interrupted"
        assert saved["content"] == result["text"]
