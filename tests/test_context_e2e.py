"""Context policies, long documents, files and structured output through the real script."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptcli.store.sessions import SessionStore, StoredMessage
from tests.conftest import Gptcli

pytestmark = pytest.mark.slow
SECRET = "The secret word is banana. What is the secret word?"


def long_session(home: Path, exchanges: int = 8) -> None:
    store = SessionStore(home / "data")

    def fill(session: object) -> None:
        from gptcli.store.sessions import Session

        assert isinstance(session, Session)
        for n in range(exchanges):
            session.messages.append(StoredMessage("user", f"Tell me about town number {n}."))
            session.messages.append(
                StoredMessage("assistant", f"Town {n} has a market, a river and a mill. " * 6)
            )

    store.update("long", fill, create=True)


@pytest.mark.parametrize("policy", ["error", "truncate"])  # summarize: the test after the next
def test_overflow_policies(gptcli: Gptcli, policy: str) -> None:
    long_session(gptcli.home)
    result = gptcli(
        "ask",
        "--session",
        "long",
        "--ctx",
        "512",
        "-n",
        "40",
        "-t",
        "0",
        "--json",
        "--on-overflow",
        policy,
        SECRET,
    )
    if policy == "error":
        assert result.returncode == 4
        assert result.stdout == ""
        assert "fit the 512-token context window" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    context = data["context"]
    assert context["window"] == 512
    assert context["prompt_tokens"] + context["room_for_answer"] == 512
    assert context["room_for_answer"] >= 40
    assert context["dropped_messages"] > 0
    assert "oldest messages were dropped" in result.stderr
    assert "banana" in data["text"].lower()  # the latest message is always kept
    saved = json.loads((gptcli.home / "data" / "sessions" / "long.json").read_text())
    assert len(saved["messages"]) == 18  # the file keeps everything; only the prompt shrank


def test_long_stdin_is_refused_by_default(gptcli: Gptcli) -> None:
    document = "Every sentence here is filler for the test. " * 800
    result = gptcli("ask", "Summarise.", input=document)
    assert result.returncode == 4
    assert result.stdout == ""
    assert "--chunked" in result.stderr


@pytest.mark.parametrize("policy", ["error", "truncate", "summarize"])
def test_an_attachment_too_long_alone_gets_only_advice_that_can_work(
    gptcli: Gptcli, tmp_path: Path, policy: str
) -> None:
    prose = tmp_path / "prose.txt"
    prose.write_text("The river ran past the quiet mill at dawn. " * 400)
    result = gptcli(
        "ask", "--ctx", "512", "-n", "4", "-a", str(prose), "--on-overflow", policy, "q"
    )
    assert result.returncode == 4
    assert result.stderr.endswith(
        "(try a larger --ctx, --chunked for long documents, or a shorter input)\n"
    )
    assert "--on-overflow" not in result.stderr


def test_cmd_too_long_is_advised_what_cmd_can_do(gptcli: Gptcli, tmp_path: Path) -> None:
    prose = tmp_path / "prose.txt"
    prose.write_text("The river ran past the quiet mill at dawn. " * 600)
    result = gptcli("cmd", "-a", str(prose), "list the files")
    assert result.returncode == 4
    assert result.stderr.endswith("(try a shorter request or smaller attachments)\n")


def chronicle(sections: int, paragraphs: int) -> str:
    """Varied filler (about 75 tokens a paragraph), one fact at the start and one at the end."""
    import random

    rng = random.Random(1)
    subjects = [
        "The village council",
        "A local farmer",
        "The river",
        "The old mill",
        "A travelling merchant",
        "The school teacher",
        "The harvest festival",
        "The northern road",
        "A flock of geese",
        "The blacksmith",
    ]
    verbs = [
        "discussed",
        "repaired",
        "described",
        "visited",
        "measured",
        "painted",
        "ignored",
        "celebrated",
        "crossed",
        "counted",
    ]
    objects = [
        "the wooden bridge",
        "the autumn market",
        "the stone wall",
        "the apple orchard",
        "the church bell",
        "the wheat fields",
        "the town square",
        "the fishing boats",
        "the winter stores",
        "the hill path",
    ]

    def paragraph() -> str:
        return " ".join(
            f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} "
            f"on day {rng.randint(1, 300)}."
            for _ in range(6)
        )

    parts = []
    for number in range(1, sections + 1):
        body = "\n\n".join(paragraph() for _ in range(paragraphs))
        if number == 1:
            body = "The lighthouse keeper of the village is named Oswald Fairweather.\n\n" + body
        if number == sections:
            body += "\n\nAt the very end, the treasure was found buried under the great oak tree."
        parts.append(f"Section {number}\n\n{body}")
    return "\n\n".join(parts)


def test_long_document_chunked(gptcli: Gptcli, tmp_path: Path) -> None:
    """A document of several parts at a small --ctx: notes on each part (in parallel), then
    the task on the notes. The rounds that reduce notes too long for the window are
    test_context.py's; a 45,000-token document in the default window proved no more here."""
    document = tmp_path / "chronicle.txt"
    document.write_text(chronicle(sections=4, paragraphs=5))
    result = gptcli(
        "ask",
        "--chunked",
        "--debug",
        "--ctx",
        "512",
        "-t",
        "0",
        "--json",
        "--file",
        str(document),
        "Who is the lighthouse keeper, and where was the treasure found?",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    report = data["chunked"]
    assert report["input_tokens"] > 3 * 512  # three windows' worth
    assert report["parts"] >= 4
    assert f"summarising part {report['parts']}" in result.stderr
    notes = report["notes"].lower()
    # Facts from the first and the last section survive the map-reduce into the final prompt.
    assert "oswald" in notes
    assert "oak" in notes
    assert data["text"].strip()
    print(json.dumps({k: v for k, v in report.items() if k != "notes"}), data["text"])


def test_files_are_attached_and_binary_files_refused(gptcli: Gptcli, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_text("The secret word is banana.\n")
    result = gptcli("ask", "-t", "0", "-n", "30", "--file", str(note), "What is the secret word?")
    assert result.returncode == 0, result.stderr
    assert "banana" in result.stdout.lower()
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    refused = gptcli("ask", "--file", str(binary), "Describe it.")
    assert refused.returncode == 2
    assert f"{binary} contains a NUL byte" in refused.stderr
    missing = gptcli("ask", "--file", str(tmp_path / "nope.txt"), "Describe it.")
    assert missing.returncode == 2
    assert "file not found" in missing.stderr


SCHEMAS = {
    "object": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    },
    "enum": {
        "type": "object",
        "properties": {"answer": {"enum": ["yes", "no"]}},
        "required": ["answer"],
    },
    "array": {
        "type": "array",
        "items": {"type": "string", "maxLength": 24},
        "minItems": 2,
        "maxItems": 4,
    },
}


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_schema_output_parses_and_validates(gptcli: Gptcli, kind: str, tmp_path: Path) -> None:
    from jsonschema import validate

    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMAS[kind]))
    prompts = {
        "object": "Name the capital city of France, with its country.",
        "enum": "Is Paris in France?",
        "array": "List some fruits.",
    }
    result = gptcli("ask", "-t", "0", "-n", "120", "--schema", str(schema_file), prompts[kind])
    assert result.returncode == 0, result.stderr
    validate(json.loads(result.stdout), SCHEMAS[kind])


def test_invalid_schema_and_grammar_are_usage_errors(gptcli: Gptcli, tmp_path: Path) -> None:
    bad = gptcli("ask", "--schema", '{"type": "nonsense"}', "hi")
    assert bad.returncode == 2
    assert "invalid JSON schema" in bad.stderr
    not_json = gptcli("ask", "--schema", "{nope", "hi")
    assert not_json.returncode == 2
    grammar = tmp_path / "yesno.gbnf"
    grammar.write_text('root ::= "yes" | "no"\n')
    answer = gptcli("ask", "-t", "0", "--grammar", str(grammar), "Is Paris in France?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() in ("yes", "no")
    broken = gptcli("ask", "--grammar", "root ::= (", "hi")
    assert broken.returncode == 2


def test_schema_answer_cut_by_the_limit_is_reported(gptcli: Gptcli) -> None:
    schema = (
        '{"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}'
    )
    result = gptcli("ask", "-t", "0", "-n", "8", "--schema", schema, "Write a long story.")
    assert result.returncode == 5
    assert result.stdout == ""
    assert "cut at 8 tokens before its JSON was complete" in result.stderr


def test_a_broken_grammar_is_one_line_and_the_parser_log_needs_debug(gptcli: Gptcli) -> None:
    broken = gptcli("ask", "-n", "4", "--grammar", 'root ::= "yes', "hi")
    assert broken.returncode == 2
    assert broken.stdout == ""
    assert broken.stderr == (
        "gptcli: error: the grammar does not parse (run with --debug for details)\n"
    )
    debug = gptcli("ask", "-n", "4", "--debug", "--grammar", 'root ::= "yes', "hi")
    assert debug.returncode != 0  # --debug lets the error out with its traceback
    assert "error parsing grammar: unexpected end of input" in debug.stderr  # llama.cpp's words


def test_summarize_works_in_a_small_window(gptcli: Gptcli) -> None:
    long_session(gptcli.home, exchanges=4)  # twice the window: a summary of several parts
    result = gptcli(
        "ask", "--session", "long", "--ctx", "256", "-n", "40", "-t", "0", "--json",
        "--on-overflow", "summarize", SECRET,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    context = json.loads(result.stdout)["context"]
    assert context["window"] == 256 and context["summarized_messages"] > 0
    assert context["prompt_tokens"] + 40 <= 256
    assert "replaced by a summary" in result.stderr
    saved = json.loads((gptcli.home / "data" / "sessions" / "long.json").read_text())
    assert len(saved["messages"]) == 10  # the file keeps everything; only the prompt shrank


def test_context_window_is_bounded_and_its_adjustments_are_noted(gptcli: Gptcli) -> None:
    small = gptcli("ask", "--ctx", "64", "--json", "-n", "4", "-t", "0", "hi")
    assert small.returncode == 0, small.stderr
    assert json.loads(small.stdout)["context"]["window"] == 256
    assert small.stderr == (
        "gptcli: note: the context window is 256 tokens, not 64: llama.cpp allocates it "
        "in steps of 256\n"
    )
    for too_big in ("99999999999", str(2**32)):
        refused = gptcli("ask", "--ctx", too_big, "-n", "1", "hi")
        assert refused.returncode == 2
        assert refused.stderr == "gptcli: error: --ctx must be at most 4294967295 tokens\n"
    # The largest --ctx accepted is named as typed, not as llama.cpp would round it (2**32).
    unallocatable = gptcli("ask", "--ctx", str(2**32 - 1), "-n", "1", "hi")
    assert unallocatable.returncode == 2
    assert unallocatable.stderr.count("\n") == 1
    assert unallocatable.stderr.startswith(
        "gptcli: error: a 4,294,967,295-token context window needs "
    )
    assert (
        "GiB of KV cache" in unallocatable.stderr and "try a smaller --ctx" in unallocatable.stderr
    )
    longer = gptcli("ask", "--ctx", "16384", "--json", "-n", "1", "-t", "0", "hi")
    assert longer.returncode == 0, longer.stderr
    assert json.loads(longer.stdout)["context"]["window"] == 16384
    assert longer.stderr == (
        "gptcli: note: the context window (16,384 tokens) is larger than the model's trained "
        "context (8,192): past that, answers may lose coherence\n"
    )
    config = gptcli.home / "config" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("ctx = 99999999999\n")
    broken = gptcli("ask", "-n", "1", "hi")
    assert broken.returncode == 2
    assert broken.stderr == (
        f"gptcli: error: config file {config}, line 1: ctx must be at most 4294967295 tokens\n"
    )
