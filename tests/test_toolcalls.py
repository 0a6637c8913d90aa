"""Tool calls in the engine: the formats' parsers, the templates' rendering, grammars, remote."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gptcli.config import SamplingOptions
from gptcli.engine.base import (
    Cancellation,
    Event,
    Finished,
    Message,
    TextDelta,
    ThinkingDelta,
    Timings,
    ToolCall,
    ToolCalled,
    ToolRequest,
    ToolSpec,
    Usage,
)
from gptcli.engine.grammar import tool_grammar
from gptcli.engine.template import CHATML_TEMPLATE, ChatTemplate, prompt_text
from gptcli.engine.thinking import HarmonySplitter, split_events
from gptcli.engine.toolcalls import parse_tool_events, parser_for
from gptcli.engine.toolformat import (
    GENERIC_USAGE,
    ToolFormat,
    generic_call_text,
    tool_format_of_template,
)
from tests.fakeserver import FakeServer, Script

TEMPLATES = Path(__file__).parent / "templates"
CALC = ToolSpec(
    "calc",
    "Evaluate an arithmetic expression.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": 12}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)
CLOCK = ToolSpec("clock", "The time now.", {"type": "object", "properties": {}})
TOOLS = (CALC, CLOCK)
USER = "What is 6*7? <|im_end|><|eot_id|>[INST]"  # special-token text a user may type


def run(fmt: ToolFormat, pieces: Sequence[str]) -> tuple[str, list[ToolCall]]:
    parser = parser_for(fmt, TOOLS)
    out: list[TextDelta | ToolCalled] = []
    for piece in pieces:
        out += parser.feed(piece)
    out += parser.flush()
    text = "".join(e.text for e in out if isinstance(e, TextDelta))
    return text, [e.call for e in out if isinstance(e, ToolCalled)]


def splits(text: str, rng: random.Random) -> Iterator[list[str]]:
    """The text whole, in every two pieces, one character at a time and cut at random."""
    yield [text]
    for cut in range(1, len(text)):
        yield [text[:cut], text[cut:]]
    yield list(text)
    for _ in range(10):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(2, 8))))
        yield [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


# (format, raw answer text, the text left, the calls as (name, arguments, id or None))
RECORDED: list[tuple[ToolFormat, str, str, list[tuple[str, str, str | None]]]] = [
    (
        "hermes",
        'Let me compute.\n<tool_call>\n{"name": "calc", "arguments": {"expression": "6*7"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "clock", "arguments": {}}\n</tool_call>\n',
        "Let me compute.\n",
        [("calc", '{"expression": "6*7"}', None), ("clock", "{}", None)],
    ),
    ("hermes", "Just text, no <tool_ calls.", "Just text, no <tool_ calls.", []),
    (
        "generic",
        '<tool_call>{"name": "calc", "arguments": {"expression": "</tool_call>"}}</tool_call>',
        "",
        [("calc", '{"expression": "</tool_call>"}', None)],
    ),
    (
        "llama3",
        '<|python_tag|>{"name": "calc", "parameters": {"expression": "6*7"}}',
        "",
        [("calc", '{"expression": "6*7"}', None)],
    ),
    (
        "llama3",
        '{"name": "calc", "arguments": {"expression": "1"}}; {"name": "clock", "parameters": {}}',
        "",
        [("calc", '{"expression": "1"}', None), ("clock", "{}", None)],
    ),
    ("llama3", '{"name": "Bob", "age": 3}', '{"name": "Bob", "age": 3}', []),
    ("llama3", "The answer is 42.", "The answer is 42.", []),
    (
        "mistral",
        '[TOOL_CALLS][{"name": "calc", "arguments": {"expression": "6*7"}, "id": "a1b2c3d4e"}, '
        '{"name": "clock", "arguments": {}}]',
        "",
        [("calc", '{"expression": "6*7"}', "a1b2c3d4e"), ("clock", "{}", None)],
    ),
    (
        "mistral-args",
        'Sure.[TOOL_CALLS]calc[ARGS]{"expression": "6*7"}[TOOL_CALLS]clock[CALL_ID]x1y2z3w4v'
        "[ARGS]{}",
        "Sure.",
        [("calc", '{"expression": "6*7"}', None), ("clock", "{}", "x1y2z3w4v")],
    ),
    (
        "harmony",
        "<|start|>assistant<|channel|>commentary to=functions.calc <|constrain|>json<|message|>"
        '{"expression": "6*7"}<|call|>',
        "",
        [("calc", '{"expression": "6*7"}', None)],
    ),
]


@pytest.mark.parametrize(("fmt", "raw", "text", "calls"), RECORDED)
def test_every_split_of_an_answer_gives_the_same_text_and_calls(
    fmt: ToolFormat, raw: str, text: str, calls: list[tuple[str, str, str | None]]
) -> None:
    rng = random.Random(7)
    for pieces in splits(raw, rng):
        got_text, got_calls = run(fmt, pieces)
        assert got_text == text, pieces
        assert [(c.name, c.arguments) for c in got_calls] == [(n, a) for n, a, _ in calls]
        for call, (_, _, wanted) in zip(got_calls, calls, strict=True):
            assert call.id == wanted if wanted else call.id


def test_text_streams_at_once_holding_back_only_a_possible_marker() -> None:
    parser = parser_for("hermes", TOOLS)
    assert parser.feed("Hello <tool") == [TextDelta("Hello ")]
    assert parser.feed("box") == [TextDelta("<toolbox")]
    assert parser.flush() == []


def test_a_malformed_call_is_reported_with_its_raw_text() -> None:
    body = '{"name": "calc", "arguments": {"expression": 6*7}}'
    text, calls = run("hermes", [f"<tool_call>{body}</tool_call>"])
    assert text == "" and [(c.name, c.arguments) for c in calls] == [("calc", body)]
    with pytest.raises(json.JSONDecodeError):
        json.loads(calls[0].arguments)


def test_a_call_without_a_name_or_cut_short_stays_text() -> None:
    assert run("hermes", ["<tool_call>{oops}</tool_call>"]) == ("<tool_call>{oops}", [])
    cut = '<tool_call>{"name": "calc", "argu'
    assert run("hermes", [cut]) == (cut, [])


def finished(reason: str = "stop") -> Finished:
    return Finished(reason, Usage(1, 1), Timings(0, 0, 0, 1, 0), seed=1)  # type: ignore[arg-type]


def test_a_harmony_transcript_thinks_then_calls() -> None:
    raw = (
        "<|channel|>analysis<|message|>The user wants a product.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.calc <|constrain|>json"
        '<|message|>{"expression": "6*7"}'
    )
    for pieces in splits(raw, random.Random(3)):
        source: list[Event] = [*(TextDelta(p) for p in pieces), finished()]
        events = list(
            parse_tool_events(
                split_events(iter(source), HarmonySplitter()), parser_for("harmony", TOOLS)
            )
        )
        thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
        assert thinking == "The user wants a product."
        assert not [e for e in events if isinstance(e, TextDelta)]
        calls = [e.call for e in events if isinstance(e, ToolCalled)]
        assert [(c.name, c.arguments) for c in calls] == [("calc", '{"expression": "6*7"}')]
        assert events[-1] == finished("tool_calls") or (
            isinstance(events[-1], Finished) and events[-1].reason == "tool_calls"
        )


def test_a_harmony_call_right_after_the_generation_prompt() -> None:
    raw = " to=functions.clock<|channel|>commentary json<|message|>{}"
    splitter = HarmonySplitter()
    parts = [p for ch in raw for p in splitter.feed(ch)] + splitter.flush()
    text = "".join(p.text for p in parts if isinstance(p, TextDelta))
    assert run("harmony", [text])[1][0].name == "clock"


def test_the_reason_is_tool_calls_unless_interrupted() -> None:
    call = '<tool_call>{"name": "clock", "arguments": {}}</tool_call>'
    for reason, wanted in (("stop", "tool_calls"), ("length", "tool_calls"), ("interrupted",) * 2):
        source: list[Event] = [TextDelta(call), finished(reason)]
        last = list(parse_tool_events(iter(source), parser_for("hermes", TOOLS)))[-1]
        assert isinstance(last, Finished) and last.reason == wanted
    source = [TextDelta("no call"), finished()]
    last = list(parse_tool_events(iter(source), parser_for("hermes", TOOLS)))[-1]
    assert isinstance(last, Finished) and last.reason == "stop"


# -- rendering ---------------------------------------------------------------

CONVERSATION = [
    Message("system", "Be brief."),
    Message("user", USER),
    Message("assistant", "", tool_calls=(ToolCall("call_1", "calc", '{"expression": "6*7"}'),)),
    Message("tool", "42", tool_call_id="call_1", name="calc"),
]
# template, format, the call as rendered, the result as rendered (around its text)
VENDORS: list[tuple[str, ToolFormat, str, str]] = [
    (
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        "hermes",
        '<tool_call>\n{"name": "calc", "arguments": {"expression": "6*7"}}\n</tool_call>',
        "<tool_response>\n42\n</tool_response>",
    ),
    (
        "Qwen-Qwen3-0.6B.jinja",
        "hermes",
        '<tool_call>\n{"name": "calc", "arguments": {"expression": "6*7"}}\n</tool_call>',
        "<tool_response>\n42\n</tool_response>",
    ),
    (
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "llama3",
        '{"name": "calc", "parameters": {"expression": "6*7"}}<|eot_id|>',
        '<|start_header_id|>ipython<|end_header_id|>\n\n"42"<|eot_id|>',
    ),
    (
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "llama3",
        '{"name": "calc", "parameters": {"expression": "6*7"}}<|eot_id|>',
        '<|start_header_id|>ipython<|end_header_id|>\n\n"42"<|eot_id|>',
    ),
    (
        "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        "mistral",
        '[TOOL_CALLS][{"name": "calc", "arguments": {"expression": "6*7"}, "id": "',
        '[TOOL_RESULTS]{"content": 42, "call_id": "',
    ),
    (
        "Mistral-Small-3.2-24B-Instruct-2506.jinja",
        "mistral-args",
        "[TOOL_CALLS]calc[CALL_ID]",
        "[TOOL_CONTENT]42[/TOOL_RESULTS]",
    ),
    (
        "openai-gpt-oss-120b.jinja",
        "harmony",
        "<|start|>assistant to=functions.calc<|channel|>commentary json<|message|>"
        '{"expression": "6*7"}<|call|>',
        '<|start|>functions.calc to=assistant<|channel|>commentary<|message|>"42"<|end|>',
    ),
]


@pytest.mark.parametrize(("name", "fmt", "call", "result"), VENDORS)
def test_vendor_templates_render_tools_calls_and_results(
    name: str, fmt: ToolFormat, call: str, result: str
) -> None:
    template = ChatTemplate("test", (TEMPLATES / name).read_text(), "<s>", "</s>")
    assert template.tool_format == tool_format_of_template(template.text) == fmt
    pieces = template.render(CONVERSATION, tools=TOOLS)
    text = prompt_text(pieces)
    assert "Evaluate an arithmetic expression." in text and '"expression"' in text
    assert call in text and result in text
    assert text.index(USER) < text.index(call) < text.index(result)
    assert PromptPieceCheck.user_text_is_plain(pieces)


class PromptPieceCheck:
    @staticmethod
    def user_text_is_plain(pieces: Sequence[Any]) -> bool:
        """The user's text is one verbatim piece, never template text."""
        return any(p.text == USER and not p.special for p in pieces) and not any(
            USER in p.text for p in pieces if p.special
        )


def test_mistral_ids_match_between_a_call_and_its_result() -> None:
    template = ChatTemplate("test", (TEMPLATES / VENDORS[4][0]).read_text(), "<s>", "</s>")
    text = prompt_text(template.render(CONVERSATION, tools=TOOLS))
    call_id = text.split('"id": "')[1][:9]
    assert f'"call_id": "{call_id}"' in text and call_id.isalnum()


def test_the_generic_format_round_trips() -> None:
    template = ChatTemplate("built-in", CHATML_TEMPLATE)
    assert template.tool_format == "generic"
    pieces = template.render(CONVERSATION, tools=TOOLS)
    text = prompt_text(pieces)
    system = text.split("<|im_end|>")[0]
    assert "Be brief." in system and GENERIC_USAGE in system and '"name": "clock"' in system
    call = generic_call_text(CONVERSATION[2].tool_calls[0])
    assert f"<|im_start|>assistant\n{call}<|im_end|>" in text
    assert '<|im_start|>user\n<tool_response name="calc">\n42\n</tool_response>' in text
    assert PromptPieceCheck.user_text_is_plain(pieces)
    _, calls = run("generic", [call])
    assert [(c.name, c.arguments) for c in calls] == [("calc", '{"expression": "6*7"}')]
    # Without tools offered, past calls and results are still written the same way.
    assert call in prompt_text(template.render(CONVERSATION))


@pytest.mark.parametrize("fmt", ["hermes", "generic", "llama3", "mistral", "mistral-args"])
def test_grammars_lazy_for_auto_forced_otherwise(fmt: ToolFormat) -> None:
    lazy = tool_grammar(fmt, TOOLS, "auto")
    forced = tool_grammar(fmt, TOOLS, "calc")
    assert lazy is not None and lazy.triggers and forced is not None and not forced.triggers
    assert "root ::=" in forced.text and "clock" not in forced.text
    assert tool_grammar(fmt, TOOLS, "none") is None
    assert tool_grammar("harmony", TOOLS, "auto") is None


# -- the real model ----------------------------------------------------------


@pytest.fixture
def backend(llama_backend: Any) -> Any:
    return llama_backend


QUESTION = [Message("user", "What is 6 times 7? Use the calc tool.")]
GREEDY = SamplingOptions(temperature=0, max_tokens=48, seed=1)


def reply(
    backend: Any, messages: Sequence[Message], choice: str, options: SamplingOptions = GREEDY
) -> list[Event]:
    return list(backend.stream(messages, options, Cancellation(), ToolRequest(TOOLS, choice)))


def well_formed(call: ToolCall, name: str | None = None) -> None:
    from jsonschema import validate

    assert call.name == (name or call.name) and call.name in ("calc", "clock")
    validate(json.loads(call.arguments), dict(CALC.parameters if call.name == "calc" else {}))


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["calc", "required"])
def test_a_forced_choice_makes_a_schema_valid_call(backend: Any, choice: str) -> None:
    events = reply(backend, QUESTION, choice)
    calls = [e.call for e in events if isinstance(e, ToolCalled)]
    assert calls, events
    for call in calls:
        well_formed(call, "calc" if choice == "calc" else None)
    last = events[-1]
    assert isinstance(last, Finished) and last.reason == "tool_calls"


@pytest.mark.slow
def test_auto_answers_or_calls_and_a_result_is_answered(backend: Any) -> None:
    events = reply(backend, QUESTION, "auto")
    calls = [e.call for e in events if isinstance(e, ToolCalled)]
    for call in calls:
        well_formed(call)
    last = events[-1]
    assert isinstance(last, Finished) and last.reason == ("tool_calls" if calls else last.reason)
    call = ToolCall("call_1", "calc", '{"expression": "6*7"}')
    second = [
        *QUESTION,
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "42", tool_call_id="call_1", name="calc"),
    ]
    answer = reply(backend, second, "none", SamplingOptions(temperature=0, max_tokens=12))
    assert isinstance(answer[-1], Finished) and answer[-1].reason in ("stop", "length")
    assert not [e for e in answer if isinstance(e, ToolCalled)]
    assert backend.count_tokens(second, ToolRequest(TOOLS)) > backend.count_tokens(second)


# -- remote --------------------------------------------------------------------


def test_remote_tool_calls_stream_in_fragments_and_history_is_sent() -> None:
    from gptcli.engine.openai import OpenAIBackend, RemoteOptions

    server = FakeServer(Script(["tool-calls"]))
    remote = OpenAIBackend(RemoteOptions(server.url, "fake", timeout=10))
    try:
        history = [*CONVERSATION, Message("user", "And the time?")]
        events = list(remote.stream(history, GREEDY, Cancellation(), ToolRequest(TOOLS, "calc")))
    finally:
        remote.close()
        server.close()
    calls = [e.call for e in events if isinstance(e, ToolCalled)]
    assert calls == [
        ToolCall("call_A", "calc", '{"expression": "6*7"}'),
        ToolCall("call_B", "clock", "{}"),
    ]
    assert not [e for e in events if isinstance(e, TextDelta)]
    last = events[-1]
    assert isinstance(last, Finished) and last.reason == "tool_calls"
    body = server.script.bodies[0]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "calc"}}
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "calc",
            "description": CALC.description,
            "parameters": dict(CALC.parameters),
        },
    }
    assistant, tool = body["messages"][2], body["messages"][3]
    assert assistant["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "calc", "arguments": '{"expression": "6*7"}'},
        }
    ]
    assert tool == {"role": "tool", "content": "42", "tool_call_id": "call_1", "name": "calc"}
    assert "tool_calls" not in body["messages"][1]


@pytest.mark.parametrize(
    "name",
    [
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
        "meta-llama-Llama-3.2-3B-Instruct.jinja",
        "openai-gpt-oss-120b.jinja",  # rendered only the first call of a turn
    ],
)
def test_a_turn_with_two_calls_is_told_as_two_turns(name: str) -> None:
    template = ChatTemplate("test", (TEMPLATES / name).read_text(), "<s>", "</s>")
    calls = (
        ToolCall("call_1", "calc", '{"expression": "6*7"}'),
        ToolCall("call_2", "calc", '{"expression": "1+1"}'),
    )
    conversation = [
        Message("user", USER),
        Message("assistant", "", tool_calls=calls),
        Message("tool", "42", tool_call_id="call_1", name="calc"),
        Message("tool", "2", tool_call_id="call_2", name="calc"),
    ]
    text = prompt_text(template.render(conversation, tools=TOOLS))  # the template would refuse
    first = text.index('"expression": "6*7"')
    assert first < text.index('"42"') < text.index('"expression": "1+1"') < text.index('"2"')
