"""Thinking apart from the answer: the splitters, the templates' switches, and end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation, Reply
from gptcli.engine.base import (
    Cancellation,
    Event,
    Finished,
    Message,
    TextDelta,
    ThinkingDelta,
    Timings,
    ToolRequest,
    Usage,
)
from gptcli.engine.template import ChatTemplate, prompt_text
from gptcli.engine.thinking import (
    Part,
    Splitter,
    format_of_template,
    prompt_opens_thinking,
    split_events,
    splitter_for,
    template_switches,
)
from gptcli.store.sessions import Session, StoredMessage
from tests.conftest import Gptcli
from tests.fakes import ScriptedBackend
from tests.fakeserver import FakeServer, Script

TEMPLATES = Path(__file__).parent / "templates"


def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def run(splitter: Splitter, pieces: Sequence[str]) -> tuple[str, str, list[Part]]:
    parts: list[Part] = []
    for piece in pieces:
        parts += splitter.feed(piece)
    parts += splitter.flush()
    thinking = "".join(p.text for p in parts if isinstance(p, ThinkingDelta))
    text = "".join(p.text for p in parts if isinstance(p, TextDelta))
    return thinking, text, parts


# Outputs as the models write them (after the generation prompt), and what they mean.
RECORDED: list[tuple[str, bool, str, str, str]] = [
    # (format, starts inside, raw output, thinking, answer)
    (
        "think",
        False,
        "<think>\nThe user says hi. I should greet back.\n</think>\n\nHello! How can I help?",
        "The user says hi. I should greet back.",
        "Hello! How can I help?",
    ),
    (  # DeepSeek-R1 distills: the template opened <think>
        "think",
        True,
        "Okay, 2 + 2 is 4.\n</think>\n\nThe answer is **4**.",
        "Okay, 2 + 2 is 4.",
        "The answer is **4**.",
    ),
    (  # ... and some of them write the tag again anyway
        "think",
        True,
        "<think>\nOkay, 2 + 2 is 4.\n</think>\n\nThe answer is **4**.",
        "Okay, 2 + 2 is 4.",
        "The answer is **4**.",
    ),
    (  # Qwen3 with enable_thinking false: the template wrote an empty thinking part
        "think",
        False,
        "Hello! How can I help?",
        "",
        "Hello! How can I help?",
    ),
    (
        "mistral",
        False,
        "[THINK]Simple arithmetic: 6 * 7 = 42.[/THINK]The answer is 42.",
        "Simple arithmetic: 6 * 7 = 42.",
        "The answer is 42.",
    ),
    (
        "seed",
        False,
        "<seed:think>Short one.</seed:think>Yes.",
        "Short one.",
        "Yes.",
    ),
    (
        "command-r",
        False,
        "<|START_THINKING|>Plan: answer.<|END_THINKING|><|START_RESPONSE|>Yes.",
        "Plan: answer.",
        "<|START_RESPONSE|>Yes.",
    ),
    (
        "harmony",
        False,
        "<|channel|>analysis<|message|>User greets. Respond politely.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello! How can I help you today?",
        "User greets. Respond politely.",
        "Hello! How can I help you today?",
    ),
    (  # no analysis at all, and a final message ended by <|return|>
        "harmony",
        False,
        "<|channel|>final<|message|>Just this.<|return|>",
        "",
        "Just this.",
    ),
    (  # a model behind a harmony template that answers in plain text
        "harmony",
        False,
        "Plain answer, no channels.",
        "",
        "Plain answer, no channels.",
    ),
]


@pytest.mark.parametrize(("fmt", "inside", "raw", "thinking", "text"), RECORDED)
def test_recorded_outputs_split_at_every_position(
    fmt: str, inside: bool, raw: str, thinking: str, text: str
) -> None:
    assert run(splitter_for(fmt, inside), [raw])[:2] == (thinking, text)
    assert run(splitter_for(fmt, inside), list(raw))[:2] == (thinking, text)
    for cut in range(len(raw) + 1):
        got = run(splitter_for(fmt, inside), [raw[:cut], raw[cut:]])[:2]
        assert got == (thinking, text), f"cut at {cut}: {raw[:cut]!r} | {raw[cut:]!r}"
    for first in range(0, len(raw), 3):  # three pieces: a tag may straddle two cuts
        for second in range(first, len(raw), 5):
            pieces = [raw[:first], raw[first:second], raw[second:]]
            assert run(splitter_for(fmt, inside), pieces)[:2] == (thinking, text)


def test_thinking_streams_before_it_is_closed() -> None:
    splitter = splitter_for("think")
    assert splitter.feed("<think>\nLet me see") == [ThinkingDelta("Let me see")]
    assert splitter.thinking
    assert splitter.feed(" more </thi") == [ThinkingDelta(" more")]
    assert splitter.feed("nk>\n\nDone") == [TextDelta("Done")]
    assert not splitter.thinking


@pytest.mark.parametrize(
    ("fmt", "inside", "raw", "thinking", "text"),
    [
        # cut by max_tokens inside the thinking: all of it is thinking, no answer
        ("think", False, "<think>\nStep one. Step two", "Step one. Step two", ""),
        ("think", True, "Step one. Step two </th", "Step one. Step two </th", ""),
        ("harmony", False, "<|channel|>analysis<|message|>Hmm, the us", "Hmm, the us", ""),
        ("harmony", False, "<|channel|>analysis<|message|>Done.<|end|><|start|>assis", "Done.", ""),
        # tags that are not the format's stay text
        (
            "think",
            False,
            "<thinking>not a tag</thinking> ok",
            "",
            "<thinking>not a tag</thinking> ok",
        ),
        ("think", False, "<thin", "", "<thin"),
        (
            "think",
            False,
            "Use <think> tags like </think> this.",
            "",
            "Use <think> tags like </think> this.",
        ),
        # an answer that mentions the tags after the thinking keeps them
        ("think", False, "<think>a</think>b <think>c</think>", "a", "b <think>c</think>"),
        ("think", False, "<think></think>\n\nEmpty thinking.", "", "Empty thinking."),
        ("mistral", False, "[THINK]open", "open", ""),
    ],
)
def test_cut_off_and_malformed(fmt: str, inside: bool, raw: str, thinking: str, text: str) -> None:
    for cut in range(len(raw) + 1):
        assert run(splitter_for(fmt, inside), [raw[:cut], raw[cut:]])[:2] == (thinking, text)


def test_an_answer_without_thinking_passes_through_unchanged() -> None:
    raw = "  The capital of France is Paris.\n\nIt lies on the Seine.  "
    for cut in range(len(raw) + 1):
        assert run(splitter_for("think"), [raw[:cut], raw[cut:]])[:2] == ("", raw)


def test_formats_and_switches_from_the_vendor_templates() -> None:
    qwen3 = template("Qwen-Qwen3-0.6B.jinja")
    r1 = template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")
    oss = template("openai-gpt-oss-excerpt.jinja")
    assert [format_of_template(t) for t in (qwen3, r1, oss, None)] == [
        "think",
        "think",
        "harmony",
        "think",
    ]
    assert format_of_template("{{ '[THINK]' }}") == "mistral"
    assert template_switches(qwen3, "off") == {"enable_thinking": False}
    assert template_switches(qwen3, "on") == {"enable_thinking": True}
    assert template_switches(qwen3, "auto") == {}
    assert template_switches(r1, "off") == {}
    # gpt-oss's `message.thinking` is not the switch; its reasoning effort is
    assert template_switches(oss, "off") == {"reasoning_effort": "low"}
    assert template_switches(oss, "on") == {}
    assert template_switches("{% if thinking %}x{% endif %}", "on") == {"thinking": True}


def rendered(text: str, think: str, messages: Sequence[Message]) -> tuple[str, bool]:
    chat = ChatTemplate("test", text, "<s>", "</s>")
    pieces = chat.render(messages, variables=template_switches(text, think))  # type: ignore[arg-type]
    tail = pieces[-1].text if pieces[-1].special else ""
    return prompt_text(pieces), prompt_opens_thinking(tail, format_of_template(text))


def test_the_generation_prompt_says_whether_the_model_starts_inside() -> None:
    hi = [Message("user", "Hi")]
    qwen3 = template("Qwen-Qwen3-0.6B.jinja")
    prompt, inside = rendered(qwen3, "off", hi)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") and not inside
    prompt, inside = rendered(qwen3, "auto", hi)
    assert prompt.endswith("<|im_start|>assistant\n") and not inside
    prompt, inside = rendered(template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"), "on", hi)
    assert prompt.endswith("Assistant\uff5c><think>\n") and inside
    oss = template("openai-gpt-oss-excerpt.jinja")
    prompt, inside = rendered(oss, "off", hi)
    assert "Reasoning: low" in prompt and prompt.endswith("<|start|>assistant") and not inside
    assert "Reasoning: medium" in rendered(oss, "auto", hi)[0]
    # a user message that ends with the tag does not count
    text = "{{ messages[-1]['content'] }}"
    assert not rendered(text, "auto", [Message("user", "say <think>")])[1]


def test_history_sent_back_has_no_thinking(monkeypatch: pytest.MonkeyPatch) -> None:
    class Thinking(ScriptedBackend):
        def stream(
            self,
            messages: Sequence[Message],
            options: SamplingOptions,
            cancel: Cancellation,
            tools: ToolRequest | None = None,
        ) -> Iterator[Event]:
            return split_events(super().stream(messages, options, cancel), splitter_for("think"))

    backend = Thinking([["<think>", "Greet", " back.", "</think>", "\n\nHel", "lo"], ["Fine."]])
    conversation = Conversation()
    reply = Reply()
    events = list(conversation.send("Hi", backend, SamplingOptions(), Cancellation(), reply))
    assert [type(e) for e in events] == [
        ThinkingDelta,
        ThinkingDelta,
        TextDelta,
        TextDelta,
        Finished,
    ]
    assert (reply.thinking, reply.text) == ("Greet back.", "Hello")
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.thinking_tokens == 4
    list(conversation.send("And?", backend, SamplingOptions(), Cancellation(), Reply()))
    assert backend.seen[1] == [
        Message("user", "Hi"),
        Message("assistant", "Hello"),
        Message("user", "And?"),
    ]


def test_a_backend_that_counts_its_thinking_keeps_its_count() -> None:
    done = Finished("stop", Usage(1, 9), Timings(0, 0, 0, 1, 0), 0, thinking_tokens=7)
    events = list(split_events(iter([ThinkingDelta("x"), done]), splitter_for("think")))
    assert events[-1] == done


def test_sessions_keep_the_thinking_and_old_files_still_load() -> None:
    session = Session("t", messages=[StoredMessage("user", "Hi")])
    session.messages.append(StoredMessage("assistant", "Hello", thinking="Greet \ud800 back."))
    data = session.to_json()
    loaded = Session.from_json(data, "t")
    assert loaded.messages[1].thinking == "Greet \ud800 back."
    assert loaded.messages[0].thinking is None
    assert "thinking" not in json.loads(data)["messages"][0]
    old = {"schema": 1, "messages": [{"role": "assistant", "content": "x", "thinking": 3}]}
    assert Session.from_json(json.dumps(old).encode(), "o").messages[0].thinking is None


# -- end to end -----------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer(Script(steps=["think-content"]))
    yield server
    server.close()


@pytest.mark.parametrize("step", ["think-content", "think-reasoning", "think-reasoning-vllm"])
def test_remote_thinking_pipe_stderr_json_and_jsonl(
    gptcli: Gptcli, fake: FakeServer, step: str
) -> None:
    fake.script.steps = [step]
    ask = ("ask", "--base-url", fake.url, "-m", "fake")
    piped = gptcli(*ask, "hi")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "Hello world\n"
    assert piped.stderr == ""
    shown = gptcli(*ask, "--show-thinking", "hi")
    assert shown.stdout == "Hello world\n"
    assert shown.stderr == "The user greets me.\n"
    as_json = json.loads(gptcli(*ask, "--json", "hi").stdout)
    assert (as_json["text"], as_json["thinking"]) == ("Hello world", "The user greets me.")
    lines = [json.loads(line) for line in gptcli(*ask, "--jsonl", "hi").stdout.splitlines()]
    thinking = "".join(e["text"] for e in lines if e["type"] == "thinking")
    text = "".join(e["text"] for e in lines if e["type"] == "delta")
    assert (thinking, text) == ("The user greets me.", "Hello world")
    assert [e["type"] for e in lines].index("thinking") < [e["type"] for e in lines].index("delta")


def test_remote_history_and_session_and_switch(gptcli: Gptcli, fake: FakeServer) -> None:
    ask = ("ask", "--base-url", fake.url, "-m", "fake")
    assert gptcli(*ask, "--session", "t", "hi").returncode == 0
    fake.script.steps = ["think-reasoning"]
    second = gptcli(*ask, "-c", "--think", "off", "again")
    assert second.returncode == 0, second.stderr
    first_body, second_body = fake.script.bodies
    assert "chat_template_kwargs" not in first_body
    assert second_body["chat_template_kwargs"] == {"enable_thinking": False}
    assert second_body["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello world"},
        {"role": "user", "content": "again"},
    ]
    saved = json.loads((gptcli.home / "data" / "sessions" / "t.json").read_text())
    answers = [m for m in saved["messages"] if m["role"] == "assistant"]
    assert [(m["content"], m["thinking"]) for m in answers] == [
        ("Hello world", "The user greets me."),
        ("Hello world", "The user greets me."),
    ]
    shown = gptcli("sessions", "show", "t")
    assert shown.returncode == 0
    bad = gptcli(*ask, "--think", "maybe", "hi")
    assert bad.returncode == 2 and "think" in bad.stderr


GRAMMAR = r'root ::= "<think>\nThe capital of France is Paris.\n</think>\n\n" "Paris."'


@pytest.mark.slow
def test_local_thinking_through_the_bundled_model(gptcli: Gptcli) -> None:
    ask = ("ask", "-t", "0", "-n", "40", "--grammar", GRAMMAR)
    piped = gptcli(*ask, "What is the capital of France?")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "Paris.\n"
    assert "capital" not in piped.stderr
    shown = gptcli(*ask, "--show-thinking", "What is the capital of France?")
    assert shown.stdout == "Paris.\n"
    assert "The capital of France is Paris.\n" in shown.stderr
    as_json = json.loads(gptcli(*ask, "--json", "What is the capital of France?").stdout)
    assert as_json["text"] == "Paris."
    assert as_json["thinking"] == "The capital of France is Paris."


def test_repl_collapses_the_thinking_and_shows_it_on_request(
    gptcli: Gptcli, fake: FakeServer
) -> None:
    from tests.conftest import gptcli_executable
    from tests.terminal import Terminal

    fake.script.steps = ["think-reasoning"]
    env = {**gptcli.env, "TERM": "xterm-256color"}
    term = Terminal([gptcli_executable(), "--base-url", fake.url, "-m", "fake"], env)
    try:
        term.wait_prompt(1)
        term.type_line("hi")
        term.wait_prompt(2)
        screen = "\n".join(term.scrollback())
        assert "Hello world" in screen and "thought for" in screen
        assert "The user greets me." not in screen
        term.type_line("/show thinking")
        term.wait_text("The user greets me.")
        term.type_line("/think off")
        term.wait_text("(think = off)")
        term.type_line("again")
        term.wait_prompt(5)
        assert fake.script.bodies[-1]["chat_template_kwargs"] == {"enable_thinking": False}
        term.ctrl("d")
        assert term.wait_exit() == 0
    finally:
        term.close()
