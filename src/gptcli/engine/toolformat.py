"""How a model is told about tools, and how its past calls and their results are written.

A chat template that renders tools itself gets them, its past calls and their
results in the shapes of the OpenAI API, which is what the vendors' templates
read. The format the model answers in is recognised from the template's text:

- ``hermes``: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, several per
  answer (Qwen2.5, Qwen3, Hermes 2/3);
- ``llama3``: the whole answer is ``{"name": ..., "parameters": {...}}``, maybe after
  ``<|python_tag|>`` (Llama 3.1, 3.2, 3.3);
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}]`` (Mistral
  Nemo and older); ``mistral-args``: ``[TOOL_CALLS]name[ARGS]{...}``, one such run per
  call (Mistral Small 3.2, Magistral, Devstral);
- ``harmony``: a message to ``functions.NAME`` on gpt-oss's commentary channel.

A template that never mentions ``tools``, or renders them in a way not listed, gets
the ``generic`` format: the tools and :data:`GENERIC_USAGE` are appended to the
system prompt, past calls are written into the assistant's text in the hermes form,
and results come back as user messages in ``<tool_response>`` tags.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from gptcli.engine.base import Message, ToolCall, ToolRequest, ToolSpec
from gptcli.parsing import loads_json

ToolFormat = Literal["hermes", "llama3", "mistral", "mistral-args", "harmony", "generic"]

GENERIC_USAGE = (
    "To call a tool, answer with one line per call, in exactly this form:\n"
    '<tool_call>{"name": "<tool name>", "arguments": {<the arguments as a JSON object>}}'
    "</tool_call>\n"
    "Write nothing after your calls. Each result comes back in "
    '<tool_response name="<tool name>">...</tool_response> tags; then answer the user.'
)
GENERIC_HEADER = "# Tools\n\nYou can call these tools (their arguments are JSON Schema):\n"
_MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")


def tool_format_of_template(text: str | None) -> ToolFormat:
    """The tool-call format a chat template speaks; ``generic`` when it renders no tools."""
    if not text or not re.search(r"\btools\b", text):
        return "generic"
    if "<|channel|>" in text and "functions." in text:
        return "harmony"
    if "[TOOL_CALLS]" in text:
        return "mistral-args" if "[ARGS]" in text else "mistral"
    if "<tool_call>" in text:
        return "hermes"
    if "<|python_tag|>" in text or ("ipython" in text and '"parameters"' in text):
        return "llama3"
    return "generic"


def offered(tools: ToolRequest | None) -> tuple[ToolSpec, ...]:
    """The tools a reply may see: none without a request or with choice ``none``."""
    if tools is None or tools.choice == "none":
        return ()
    return tools.tools


def new_call_id(fmt: ToolFormat) -> str:
    """An id for a call whose format carries none (Mistral's templates insist on nine
    letters and digits)."""
    if fmt in ("mistral", "mistral-args"):
        return secrets.token_hex(5)[:9]
    return "call_" + secrets.token_hex(12)


def mistral_id(call_id: str) -> str:
    """A call id as Mistral's templates accept it, the same for a call and its result."""
    if _MISTRAL_ID.fullmatch(call_id):
        return call_id
    return hashlib.sha256(call_id.encode()).hexdigest()[:9]


def tool_dict(tool: ToolSpec) -> dict[str, Any]:
    """A tool as the OpenAI API (and the templates) describe one."""
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


def arguments_value(arguments: str) -> Any:
    """A call's arguments as the object they spell; the raw text when they are not one
    (templates ``tojson`` the value, so a malformed call is still shown as it was)."""
    try:
        value = loads_json(arguments)
    except (json.JSONDecodeError, RecursionError):
        return arguments
    return value if isinstance(value, dict) else arguments


def call_dict(call: ToolCall, fmt: ToolFormat, raw_arguments: bool = False) -> dict[str, Any]:
    """A past call in the OpenAI shape; templates want the arguments as an object, the
    API as text (``raw_arguments``)."""
    call_id = mistral_id(call.id) if fmt in ("mistral", "mistral-args") else call.id
    arguments = call.arguments if raw_arguments else arguments_value(call.arguments)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    }


def message_dict(
    message: Message,
    content: str | list[dict[str, Any]],
    fmt: ToolFormat,
    raw_arguments: bool = False,
) -> dict[str, Any]:
    """A message in the OpenAI shape, with ``content`` standing for its text (or its
    content parts, where it holds images or audio).

    The tool keys are present only where they apply: templates test for
    ``'tool_calls' in message``.
    """
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [call_dict(c, fmt, raw_arguments) for c in message.tool_calls]
    if message.role == "tool":
        call_id = message.tool_call_id or ""
        out["tool_call_id"] = mistral_id(call_id) if fmt.startswith("mistral") else call_id
        if message.name:
            out["name"] = message.name
    return out


def generic_call_text(call: ToolCall) -> str:
    body = {"name": call.name, "arguments": arguments_value(call.arguments)}
    return f"<tool_call>{json.dumps(body, ensure_ascii=False)}</tool_call>"


def _generic_tools_text(tools: Sequence[ToolSpec]) -> str:
    lines = [
        json.dumps(
            {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            ensure_ascii=False,
        )
        for t in tools
    ]
    return GENERIC_HEADER + "<tools>\n" + "\n".join(lines) + "\n</tools>\n\n" + GENERIC_USAGE


def _generic_result(message: Message) -> str:
    name = json.dumps(message.name or "", ensure_ascii=False)
    return f"<tool_response name={name}>\n{message.content}\n</tool_response>"


def generic_messages(messages: Sequence[Message], tools: Sequence[ToolSpec]) -> list[Message]:
    """``messages`` for a template that knows no tools: tools in the system prompt, calls
    as text in the assistant's turns, results as user turns (consecutive ones joined)."""
    out: list[Message] = []
    for message in messages:
        if message.role == "tool":
            text = _generic_result(message)
            if out and out[-1].role == "user" and out[-1].content.startswith("<tool_response"):
                text = out.pop().content + "\n" + text
            out.append(Message("user", text))
        elif message.tool_calls:
            calls = "\n".join(generic_call_text(c) for c in message.tool_calls)
            text = f"{message.content.rstrip()}\n{calls}" if message.content.strip() else calls
            out.append(Message("assistant", text))
        else:
            out.append(Message(message.role, message.content))
    if tools:
        usage = _generic_tools_text(tools)
        if out and out[0].role == "system":
            out[0] = Message("system", f"{out[0].content.rstrip()}\n\n{usage}".lstrip())
        else:
            out.insert(0, Message("system", usage))
    return out


def one_call_per_turn(messages: Sequence[Message]) -> list[Message]:
    """The history with each assistant turn holding at most one call, followed by its result.

    Llama 3.x templates refuse a turn with several calls (and a refusal would make the
    backend give up the model's template), gpt-oss's renders only the first; the models
    themselves call one tool per turn, so a turn with several is told as several turns,
    each call next to its result.
    """
    rewritten: list[Message] = []
    index = 0
    while index < len(messages):
        message = messages[index]
        index += 1
        if message.role != "assistant" or len(message.tool_calls) < 2:
            rewritten.append(message)
            continue
        results: dict[str | None, Message] = {}
        while index < len(messages) and messages[index].role == "tool":
            results.setdefault(messages[index].tool_call_id, messages[index])
            index += 1
        for number, call in enumerate(message.tool_calls):
            text = message.content if number == 0 else ""
            rewritten.append(Message("assistant", text, tool_calls=(call,)))
            if call.id in results:
                rewritten.append(results.pop(call.id))
        rewritten.extend(results.values())  # results that answer no call of the turn
    return rewritten
