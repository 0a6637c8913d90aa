"""The tool loop of an answer: rounds of calls, approval, limits and interruptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gptcli.config import SamplingOptions
from gptcli.conversation.chat import Conversation, Reply
from gptcli.conversation.toolloop import Answer, Approval, ToolResult, ToolUse
from gptcli.engine.base import (
    Cancellation,
    Finished,
    TextDelta,
    ToolCall,
    ToolCalled,
    ToolSpec,
)
from gptcli.tools.base import Tool, ToolOutput
from tests.fakes import ScriptedBackend


@dataclass(frozen=True)
class FakeTool:
    spec: ToolSpec
    read_only: bool = True
    source: str = "test"

    def call(self, arguments: dict[str, Any], timeout: float) -> ToolOutput:
        return ToolOutput(f"{self.spec.name} ran")


@dataclass
class FakeRunner:
    tools: dict[str, FakeTool]
    ran: list[ToolCall] = field(default_factory=list)
    during: Callable[[], None] | None = None

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self.tools.values())

    def get(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def run(self, call: ToolCall) -> ToolOutput:
        self.ran.append(call)
        if self.during is not None:
            self.during()
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolOutput(f"no tool named {call.name}", error=True)
        return tool.call({}, 1.0)


def runner(*names: str, writes: tuple[str, ...] = ()) -> FakeRunner:
    specs = {n: FakeTool(ToolSpec(n, f"the {n} tool", {"type": "object"})) for n in names}
    for name in writes:
        specs[name] = FakeTool(ToolSpec(name, "changes things", {"type": "object"}), False)
    return FakeRunner(specs)


def call(name: str, number: int = 1) -> ToolCall:
    return ToolCall(f"call_{number}", name, "{}")


def answer(
    backend: ScriptedBackend, use: ToolUse | None, cancel: Cancellation | None = None
) -> tuple[Conversation, Reply, list[Any]]:
    conversation = Conversation()
    reply = Reply()
    events = list(
        conversation.send(
            "What time is it?", backend, SamplingOptions(), cancel or Cancellation(), reply, use
        )
    )
    return conversation, reply, events


def test_a_call_its_result_and_the_answer_make_one_reply() -> None:
    backend = ScriptedBackend([["Checking.", call("time")], ["It is ", "noon."]])
    conversation, reply, events = answer(backend, ToolUse(runner("time")))
    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "TextDelta",
        "ToolCalled",
        "ToolResult",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "Finished",
    ]
    assert reply.text == "Checking.\n\nIt is noon."
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assistant, result = conversation.messages[1], conversation.messages[2]
    assert assistant.tool_calls == (call("time"),) and assistant.content == "Checking."
    assert (result.content, result.tool_call_id, result.name) == ("time ran", "call_1", "time")
    assert reply.finished is not None and reply.finished.reason == "stop"
    assert reply.finished.usage.completion_tokens == 4  # both rounds' tokens
    assert reply.rounds == 1 and [r.text for r in reply.tool_results] == ["time ran"]
    # The second request carried the call and its result.
    assert [m.role for m in backend.seen[1]] == ["user", "assistant", "tool"]


def test_a_forced_choice_holds_for_the_first_round_and_the_last_round_may_not_call() -> None:
    backend = ScriptedBackend([[call("time", 1)], [call("time", 2)], ["Done."]])
    use = ToolUse(runner("time"), choice="time", max_rounds=2)
    _, reply, _ = answer(backend, use)
    assert [r.choice if r else None for r in backend.offered] == ["time", "auto", "none"]
    assert reply.rounds == 2 and reply.text == "Done."


def test_no_tools_offered_when_none_are_enabled_or_choice_is_none() -> None:
    backend = ScriptedBackend([["Hi."], ["Hi."]])
    answer(backend, ToolUse(runner()))
    answer(backend, ToolUse(runner("time"), choice="none"))
    assert backend.offered[0] is None and backend.offered[1] is not None
    assert backend.offered[1].choice == "none"


def test_a_tool_that_changes_things_is_refused_without_a_terminal_or_approval() -> None:
    tools = runner(writes=("shell",))
    backend = ScriptedBackend([[call("shell")], ["I could not."]])
    conversation, reply, _ = answer(backend, ToolUse(tools))
    assert tools.ran == []
    refusal = reply.tool_results[0]
    assert refusal.refused and refusal.error and "--approve shell" in refusal.text
    assert conversation.messages[2].content == refusal.text


@pytest.mark.parametrize(
    ("approval", "runs"),
    [(Approval(everything=True), 2), (Approval(allowed={"shell"}), 2)],
)
def test_yes_and_approve_let_it_run(approval: Approval, runs: int) -> None:
    tools = runner(writes=("shell",))
    backend = ScriptedBackend([[call("shell", 1), call("shell", 2)], ["Ran."]])
    answer(backend, ToolUse(tools, approval=approval))
    assert len(tools.ran) == runs


def test_the_user_is_asked_each_time_unless_they_say_always() -> None:
    asked: list[str] = []
    replies: list[Answer] = ["no", "yes", "always"]

    def ask(call: ToolCall, tool: Tool) -> Answer:
        asked.append(call.id)
        return replies.pop(0)

    tools = runner("time", writes=("shell",))
    calls: list[str | ToolCall] = [
        call("shell", 1),
        call("time", 2),
        call("shell", 3),
        call("shell", 4),
        call("shell", 5),
    ]
    backend = ScriptedBackend([calls, ["Ok."]])
    _, reply, _ = answer(backend, ToolUse(tools, approval=Approval(ask=ask)))
    assert asked == ["call_1", "call_3", "call_4"]  # read-only time is never asked about
    assert [c.id for c in tools.ran] == ["call_2", "call_3", "call_4", "call_5"]
    assert reply.tool_results[0].refused and "declined" in reply.tool_results[0].text


def test_ctrl_c_while_a_tool_runs_ends_the_answer_interrupted_with_a_valid_history() -> None:
    cancel = Cancellation()
    tools = runner("time", "calc")
    tools.during = cancel.cancel  # what the signal handler does on Ctrl-C
    backend = ScriptedBackend([[call("time", 1), call("calc", 2)], ["never asked"]])
    conversation, reply, events = answer(backend, ToolUse(tools), cancel)
    assert [r.interrupted for r in reply.tool_results] == [True, True]
    assert len(tools.ran) == 1  # the second call never started
    assert reply.finished is not None and reply.finished.reason == "interrupted"
    assert isinstance(events[-1], Finished)
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "tool"]
    assert len(backend.replies) == 1  # no further round was asked for


def test_a_failure_in_a_later_round_keeps_the_earlier_rounds() -> None:
    class Failing(ScriptedBackend):
        def stream(self, *args: Any, **kwargs: Any) -> Any:
            if len(self.seen) == 1:
                raise OSError("server went away")
            return super().stream(*args, **kwargs)

    backend = Failing([[call("time")]])
    conversation = Conversation()
    events: list[object] = []
    with pytest.raises(OSError):
        for event in conversation.send(
            "Hi", backend, SamplingOptions(), Cancellation(), Reply(), ToolUse(runner("time"))
        ):
            events.append(event)
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool"]
    assert [type(e) for e in events] == [ToolCalled, ToolResult]


def test_without_tools_an_answer_is_as_before() -> None:
    backend = ScriptedBackend([["Hel", "lo"]])
    _, reply, events = answer(backend, None)
    assert [type(e) for e in events] == [TextDelta, TextDelta, Finished]
    assert backend.offered == [None]
    assert reply.text == "Hello" and reply.rounds == 0


def test_a_session_keeps_the_calls_and_results_and_a_retry_replaces_them(tmp_path: Any) -> None:
    from gptcli.conversation.recorder import SessionRecorder, conversation_of
    from gptcli.store.sessions import SessionStore

    store = SessionStore(tmp_path)
    recorder = SessionRecorder(store, "tools", lambda message: None)
    backend = ScriptedBackend([["Checking.", call("time")], ["It is noon."], ["Noon."]])
    conversation = Conversation()
    reply = Reply()
    use = ToolUse(runner("time"))
    recorder.user("What time is it?")
    list(
        conversation.send(
            "What time is it?", backend, SamplingOptions(), Cancellation(), reply, use
        )
    )
    recorder.answer(reply.final_text, reply.finished, {}, SamplingOptions(), steps=reply.steps)
    saved = store.load("tools")
    assert [m.role for m in saved.messages] == ["user", "assistant", "tool", "assistant"]
    assert saved.messages[1].tool_calls == [{"id": "call_1", "name": "time", "arguments": "{}"}]
    assert saved.messages[3].content == "It is noon."
    assert conversation_of(saved).messages == conversation.messages

    retry = Reply()
    list(conversation.regenerate(backend, SamplingOptions(), Cancellation(), retry, use))
    recorder.answer(
        retry.final_text, retry.finished, {}, SamplingOptions(), True, steps=retry.steps
    )
    saved = store.load("tools")
    assert [m.role for m in saved.messages] == ["user", "assistant"]
    assert saved.messages[1].content == "Noon."
    assert saved.messages[1].alternatives[0]["content"] == "It is noon."
    assert conversation_of(saved).messages == conversation.messages


def test_a_calls_time_is_the_tools_own_not_the_wait_for_approval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The person takes 6 s to say yes and the tool runs for 0.5 s: the call took 0.5 s."""
    from types import SimpleNamespace

    clock = [100.0]
    fake_time = SimpleNamespace(perf_counter=lambda: clock[0])
    monkeypatch.setattr("gptcli.conversation.toolloop.time", fake_time)

    def ask(call: ToolCall, tool: Tool) -> Answer:
        clock[0] += 6.0
        return "yes"

    tools = runner(writes=("shell",))
    tools.during = lambda: clock.__setitem__(0, clock[0] + 0.5)
    use = ToolUse(tools, approval=Approval(ask=ask))
    result = use.run(call("shell"), Cancellation())
    assert not result.refused and result.seconds == pytest.approx(0.5)
