"""Small real HTTP servers on 127.0.0.1 that misbehave the ways model servers do."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# How servers refuse an input longer than their context, each in its own words.
REFUSALS: dict[str, dict[str, Any]] = {
    # llama-server started without a projector, sent an image
    "no-vision": {
        "error": {
            "code": 400,
            "message": "image input is not supported - hint: if this is unexpected, you may "
            "need to provide the mmproj",
            "type": "invalid_request_error",
        }
    },
    "ctx-llama-server": {
        "error": {
            "code": 400,
            "message": "the request exceeds the available context size, try increasing it",
            "type": "exceed_context_size_error",
            "n_prompt_tokens": 3539,
            "n_ctx": 2048,
        }
    },
    "ctx-vllm": {
        "object": "error",
        "message": "This model's maximum context length is 2048 tokens. However, you requested "
        "3600 tokens (3539 in the messages, 61 in the completion). Please reduce the length of "
        "the messages or completion.",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    },
    "ctx-vllm-new": {
        "error": {
            "message": "This model's maximum context length is 2048 tokens. However, your "
            "request has 3539 input tokens. Please reduce the length of the input messages.",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    },
    "ctx-openai": {
        "error": {
            "message": "This model's maximum context length is 2048 tokens. However, your "
            "messages resulted in 3539 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
    "400": {"error": {"message": "temperature must be positive", "type": "invalid_request_error"}},
}


def sse(text: str, field: str = "content") -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {field: text}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


# Answers of reasoning models: the thinking inside the content, cut across chunks as a
# tokenizer would (llama-server --reasoning-format none, vLLM without a reasoning parser),
# or sent apart as reasoning_content (llama-server's default, vLLM) or reasoning.
THINKING_STEPS: dict[str, list[tuple[str, str]]] = {
    "think-content": [
        ("content", "<th"),
        ("content", "ink>\nThe user"),
        ("content", " greets me.</"),
        ("content", "think>\n\nHello"),
        ("content", " world"),
    ],
    "think-reasoning": [
        ("reasoning_content", "The user"),
        ("reasoning_content", " greets me."),
        ("content", "Hello"),
        ("content", " world"),
    ],
    "think-reasoning-vllm": [
        ("reasoning", "The user greets me."),
        ("content", "Hello world"),
    ],
}


# A reply that calls tools as OpenAI streams it: the first delta of each call carries its id
# and name, later ones pieces of its arguments; two calls interleave by index.
TOOL_CALL_DELTAS: list[dict[str, Any]] = [
    {"role": "assistant", "content": None},
    {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_A",
                "type": "function",
                "function": {"name": "calc", "arguments": ""},
            }
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"expr'}}]},
    {
        "tool_calls": [
            {
                "index": 1,
                "id": "call_B",
                "type": "function",
                "function": {"name": "clock", "arguments": "{}"},
            }
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": 'ession": "6*'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '7"}'}}]},
]


def tool_call_chunks() -> list[bytes]:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        for delta in TOOL_CALL_DELTAS
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]


@dataclass
class Script:
    """What the server does for each POST, in order (the last one repeats), and what it says
    about itself: ``props`` is llama-server's ``/props`` (404 when None), ``models`` the
    entries of ``/v1/models``."""

    steps: list[str]
    retry_after: str = "1"
    echo: str = ""
    props: dict[str, Any] | None = None
    props_stall: bool = False
    models: list[dict[str, Any]] = field(default_factory=lambda: [{"id": "fake"}])
    requests: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _plain(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def do_GET(self) -> None:
            script.gets.append(self.path)
            if self.path == "/props" and script.props_stall:
                time.sleep(30)
            elif self.path == "/props" and script.props is not None:
                self._plain(200, json.dumps(script.props))
            elif self.path == "/v1/models":
                self._plain(200, json.dumps({"object": "list", "data": script.models}))
            else:
                self._plain(404, '{"detail": "Not Found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            script.bodies.append(json.loads(self.rfile.read(length)))
            script.requests.append((time.monotonic(), dict(self.headers)))
            step = script.steps[min(len(script.requests) - 1, len(script.steps) - 1)]
            if step == "stall":
                time.sleep(30)
                return
            if step in ("401", "404", "500"):
                self._plain(int(step), json.dumps({"error": f"nope {script.echo}"}))
                return
            if step in REFUSALS:
                self._plain(400, json.dumps(REFUSALS[step]))
                return
            if step == "429":
                self._plain(429, '{"error": "slow down"}', {"Retry-After": script.retry_after})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if step == "malformed":
                self._chunk(b"data: {not json\n\n")
                self._chunk(b"")
                return
            if step == "ctx-in-stream":
                self._chunk(b"data: " + json.dumps(REFUSALS["ctx-llama-server"]).encode() + b"\n\n")
                self._chunk(b"")
                return
            if step in THINKING_STEPS:
                for field, piece in THINKING_STEPS[step]:
                    self._chunk(sse(piece, field))
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
                return
            if step == "tool-calls":
                for data in tool_call_chunks():
                    self._chunk(data)
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
                return
            if step == "nested":
                self._chunk(b"data: " + b"[" * 100_000 + b"\n\n")
                self._chunk(b"")
                return
            for piece in ("Hello", " wor", "ld"):
                self._chunk(sse(piece))
                if step == "cut" and piece == " wor":
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-stream, no terminator
                    return
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

    return Handler


class FakeServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
