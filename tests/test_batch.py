"""`gptcli batch`: every id answered once, errors as records, resume after Ctrl-C, order, lines."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gptcli.conversation.batchitems import Item, ItemError, read_items
from gptcli.terminal.batch import ResultWriter, finished_ids
from gptcli.terminal.render import GuardedStream
from tests.conftest import Gptcli, gptcli_executable
from tests.llama_server import LlamaServer

FRANCE = "Name the capital city of France."
TOPICS = [
    "rain", "the sea", "a cat", "bread", "a bridge", "the moon", "a violin", "snow",
    "a garden", "trains", "a lighthouse", "honey", "a clock", "mountains", "a river",
    "autumn", "a library", "coffee", "a kite", "the desert",
]  # fmt: skip


def records(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (fails on anything else: stdout stays clean)."""
    parsed = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(item) + "\n" for item in items)


@pytest.mark.slow
def test_every_id_answered_exactly_once(gptcli: Gptcli, tmp_path: Path) -> None:
    items = [{"id": "fr", "prompt": FRANCE, "temperature": 0, "max_tokens": 16}]
    items += [{"id": f"t{n}", "prompt": f"One word for {t}."} for n, t in enumerate(TOPICS)]
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl(items))
    done = gptcli("batch", str(source), "-n", "4", "--seed", "1", "--parallel", "8", timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar without a terminal
    results = records(done.stdout)
    assert sorted(str(r["id"]) for r in results) == sorted(str(i["id"]) for i in items)
    assert len(results) == len(items)
    france = next(r for r in results if r["id"] == "fr")
    assert "Paris" in france["text"]
    for result in results:
        assert result["finish_reason"] in ("stop", "length")
        assert result["usage"]["completion_tokens"] <= (16 if result["id"] == "fr" else 4)
        assert set(result["timings"]) >= {"time_to_first_token_s", "decode_s", "tokens_per_s"}


@pytest.mark.slow
def test_a_malformed_line_is_an_error_record_and_order_is_kept(gptcli: Gptcli) -> None:
    lines = [
        json.dumps({"id": "a", "prompt": "Say yes."}),
        "{not json",
        json.dumps({"id": "c", "prompt": FRANCE, "max_tokens": 12}),
        json.dumps({"id": "d"}),
        json.dumps({"id": "e", "prompt": "Say no.", "max_tokens": 2}),
    ]
    done = gptcli(
        "batch", "--ordered", "-t", "0", "-n", "4", "--parallel", "3",
        input="\n".join(lines) + "\n", timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == "gptcli: error: 2 of 5 items failed (see their error records)"
    results = records(done.stdout)
    assert [r["id"] for r in results] == ["a", 2, "c", "d", "e"]
    assert results[1]["error"]["kind"] == "input" and "line 2" in results[1]["error"]["message"]
    assert "prompt" in results[3]["error"]["message"]
    assert "Paris" in results[2]["text"]
    assert results[4]["usage"]["completion_tokens"] <= 2


@pytest.mark.slow
def test_lines_input_uses_line_numbers_as_ids(gptcli: Gptcli, tmp_path: Path) -> None:
    source = tmp_path / "prompts.txt"
    source.write_text(f"{FRANCE}\n\nSay hello.\n")
    out = tmp_path / "out.jsonl"
    done = gptcli("batch", "--lines", str(source), "-o", str(out), "-t", "0", "-n", "10")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    results = {r["id"]: r for r in records(out.read_text())}
    assert sorted(results) == [1, 3]
    assert "Paris" in results[1]["text"]


@pytest.mark.slow
def test_prompts_that_begin_alike_reuse_the_prefix_and_answer_the_same(gptcli: Gptcli) -> None:
    """A shared system prompt is evaluated once; reused cells must not change the answer."""
    others = [
        "One word for rain.",
        "Name a colour.",
        "Say hello.",
        "Name a fruit.",
        "Count to three.",
    ]
    items: list[dict[str, Any]] = []
    for n, other in enumerate(others):
        items += [{"id": f"fr{n}", "prompt": FRANCE}, {"id": f"o{n}", "prompt": other}]
    system = (
        "You are a helpful assistant who answers questions about geography briefly and "
        "accurately. Keep every answer to one short sentence."
    )
    done = gptcli(
        "batch", "--ordered", "-s", system, "-t", "0", "-n", "12", "--parallel", "3",
        input=jsonl(items), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = records(done.stdout)
    assert [r["id"] for r in results] == [i["id"] for i in items]
    cached = [r["timings"]["cached_prompt_tokens"] for r in results]
    assert cached[0] == 0  # the first prompt has nothing to reuse
    assert all(count >= 20 for count in cached[1:]), cached  # the template and system prompt
    assert max(cached) == results[0]["usage"]["prompt_tokens"] - 1  # the same prompt again
    france = {r["text"] for r in results if str(r["id"]).startswith("fr")}
    assert len(france) == 1 and "Paris" in france.pop()


def _wait_for_records(path: Path, count: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if path.exists() and path.read_text().count("\n") >= count:
            return
        time.sleep(0.1)
    raise AssertionError("the batch wrote no results in time")


@pytest.mark.slow
def test_ctrl_c_then_resume_answers_the_rest_once(gptcli: Gptcli, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    items = [{"id": n, "prompt": f"Write a sentence about {t}."} for n, t in enumerate(TOPICS[:6])]
    source.write_text(jsonl(items))
    out = tmp_path / "out.jsonl"
    args = [gptcli_executable(), "batch", str(source), "-o", str(out), "-t", "0", "--parallel"]
    child = subprocess.Popen(
        [*args, "2", "-n", "8"],
        env=gptcli.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _wait_for_records(out, 1, child)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    first = records(out.read_text())
    assert 1 <= len(first) < len(items)
    resumed = gptcli("batch", str(source), "-o", str(out), "--resume", "-t", "0", "-n", "8")
    assert resumed.returncode == 0, resumed.stderr
    ids = [r["id"] for r in records(out.read_text())]
    assert sorted(ids) == list(range(len(items)))  # each id exactly once


@pytest.fixture(scope="module")
def server(bundled_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    # By default llama_cpp.server ends the answer it is streaming when another request
    # arrives; a batch sends several at once, as to any server that queues or batches them.
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = LlamaServer(bundled_model, log, extra=("--interrupt_requests", "False"))
    yield running
    running.close()


@pytest.mark.slow
def test_remote_batch_has_the_same_contract(gptcli: Gptcli, server: LlamaServer) -> None:
    lines = [json.dumps({"id": "fr", "prompt": FRANCE}), "[1]", "Say hi."]
    items = "\n".join([*lines[:2], json.dumps({"prompt": lines[2]})]) + "\n"
    done = gptcli(
        "batch", "--base-url", server.url, "--ordered", "--parallel", "2", "-t", "0", "-n", "16",
        input=items, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    results = records(done.stdout)
    assert [r["id"] for r in results] == ["fr", 2, 3]
    assert "Paris" in results[0]["text"]
    assert results[1]["error"]["kind"] == "input"
    assert results[2]["usage"]["completion_tokens"] > 0


def test_usage_errors_exit_2(gptcli: Gptcli, tmp_path: Path) -> None:
    assert gptcli("batch", "--resume", input="{}\n").returncode == 2
    assert gptcli("batch", "--parallel", "0", input="{}\n").returncode == 2
    assert gptcli("batch", str(tmp_path / "missing.jsonl")).returncode == 2


def test_items_are_read_one_line_at_a_time() -> None:
    def endless() -> Iterator[bytes]:
        number = 0
        while True:
            number += 1
            yield json.dumps({"prompt": f"p{number}"}).encode() + b"\n"

    items = read_items(endless(), plain=False)
    first = [next(items) for _ in range(3)]
    assert [i.id for i in first] == [1, 2, 3]
    parsed = list(read_items([b'{"id": true, "prompt": "x"}\n', b"\n", b'{"prompt": 3}\n'], False))
    assert all(isinstance(p, ItemError) for p in parsed)
    assert [p.index for p in parsed] == [0, 1]
    plain = list(read_items([b"a\n", b"  \n", b"b\n"], plain=True))
    assert plain == [Item(0, 1, "a"), Item(1, 3, "b")]


def test_an_id_already_used_is_an_input_error_for_the_later_item() -> None:
    lines = [
        b'{"prompt": "a"}\n',
        b'{"prompt": "b"}\n',
        b'{"id": 2, "prompt": "c"}\n',  # the defaulted id of line 2
        b'{"id": 6, "prompt": "d"}\n',
        b'{"id": "2", "prompt": "e"}\n',  # a string: not the same id as 2
        b'{"prompt": "f"}\n',  # defaults to 6, given to line 4
        b"not json\n",  # an error record with id 7 is written for it
        b'{"id": 7, "prompt": "g"}\n',
        b'{"id": "2", "prompt": "h"}\n',
    ]
    parsed = list(read_items(lines, plain=False))
    assert [p.id for p in parsed] == [1, 2, None, 6, "2", None, 7, None, None]
    assert [type(p) for p in parsed] == [Item, Item, ItemError, Item, Item, ItemError] + [
        ItemError
    ] * 3
    messages = [p.message for p in parsed if isinstance(p, ItemError)]
    assert messages == [
        "line 3: id 2 is already used by line 2",
        "line 6: id 6 (the line number) is already used by line 4",
        "line 7 is not valid JSON (Expecting value)",
        "line 8: id 7 is already used by line 7",
        'line 9: id "2" is already used by line 5',
    ]
    many = (json.dumps({"prompt": "p"}).encode() + b"\n" for _ in range(100_000))
    assert sum(1 for item in read_items(many, plain=False) if isinstance(item, Item)) == 100_000


def test_ordered_writer_holds_only_what_finished_early(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with path.open("w") as handle:
        writer = ResultWriter(GuardedStream(handle), ordered=True)
        writer.put(2, {"id": "c"})
        writer.skip(1)
        assert path.read_text() == ""
        writer.put(0, {"id": "a"})
        assert [r["id"] for r in records(path.read_text())] == ["a", "c"]
    path.write_text('{"id": "a"}\n{"id": 7}\n{"id": "cu')
    assert finished_ids(path) == {'"a"', "7"}
    assert path.read_text() == '{"id": "a"}\n{"id": 7}\n'  # the cut record is gone


@pytest.mark.slow
def test_an_item_sets_any_per_request_option_and_a_typo_is_named(gptcli: Gptcli) -> None:
    """Sampling options, stop and a schema are item fields; a field that is none of them is
    named once on stderr (with the option it resembles) and the item still runs."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    items: list[dict[str, Any]] = [
        {"id": "typo", "prompt": FRANCE, "temprature": 0, "max_tokens": 12},
        {"id": "typo2", "prompt": FRANCE, "temprature": 0, "max_tokens": 12},
        {"id": "json", "prompt": FRANCE, "schema": schema, "temperature": 0, "max_tokens": 40},
        {"id": "stop", "prompt": FRANCE, "temperature": 0, "stop": ["Paris"], "top_k": 1},
        {"id": "bad", "prompt": FRANCE, "top_p": 7},
        {"id": "noschema", "prompt": FRANCE, "schema": {"type": 12}},
    ]
    done = gptcli("batch", "--ordered", "-t", "0", "-n", "40", input=jsonl(items))
    assert done.returncode == 1  # two items are input errors
    by_id = {r["id"]: r for r in records(done.stdout)}
    assert "Paris" in by_id["typo"]["text"]
    notes = [line for line in done.stderr.splitlines() if "temprature" in line]
    assert len(notes) == 1 and "did you mean 'temperature'?" in notes[0]
    assert set(json.loads(by_id["json"]["text"])) == {"city"}
    assert "Paris" not in by_id["stop"]["text"] and by_id["stop"]["finish_reason"] == "stop"
    assert by_id["bad"]["error"]["kind"] == "input"
    assert "top_p" in by_id["bad"]["error"]["message"]
    assert by_id["noschema"]["error"]["kind"] == "input"


def test_item_fields_become_its_options() -> None:
    from gptcli.config import SamplingOptions
    from gptcli.conversation.batchitems import item_options

    line = json.dumps({"prompt": "p", "min_p": 0.2, "think": "off", "seed": 4, "stop": "##"})
    (item,) = list(read_items([line.encode()], plain=False))
    assert isinstance(item, Item)
    options = item_options(item, SamplingOptions(temperature=0.5))
    assert (options.min_p, options.think, options.seed, options.stop) == (0.2, "off", 4, ("##",))
    assert options.temperature == 0.5 and item.unknown == ()
