"""A backend for OpenAI-compatible servers (llama-server, vLLM, Ollama, TGI…) over httpx.

Replies stream as server-sent events. Before the first token, 429 (honouring
Retry-After) and 5xx answers are retried a bounded number of times; after it,
nothing is retried: a stream cut in the middle keeps the partial answer and
reports the failure. A server's refusal of an input too long for its context
is a ContextOverflowError, like the local backend's. The API key is read from
an environment variable, sent only as a bearer token and never shown in
messages.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gptcli.config import SamplingOptions
from gptcli.engine.base import (
    AnswerClock,
    Cancellation,
    Event,
    Finished,
    FinishReason,
    MediaFacts,
    Message,
    ModelDetails,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCalled,
    ToolRequest,
    Usage,
)
from gptcli.engine.remotemedia import MEDIA_TOKENS_GUESS, content_of, media_refusal, sends_media
from gptcli.engine.serverinfo import (
    ContextRefusal,
    context_refusal,
    server_root,
    window_from_models,
    window_from_props,
)
from gptcli.engine.sse import sse_events
from gptcli.engine.thinking import TAGS, TagSplitter, split_events
from gptcli.engine.toolformat import message_dict, new_call_id, tool_dict
from gptcli.errors import ContextOverflowError, ModelError, RemoteError, UsageError
from gptcli.media import MediaItem, media_of
from gptcli.parsing import loads_json

MAX_RETRIES = 3
MAX_RETRY_AFTER = 30.0
DEFAULT_CONTEXT = 8192  # for servers that do not say their window
PROBE_TIMEOUT = 3.0  # seconds for each question about the window
PROBE_LIMIT = 1 << 20  # bytes: an answer about the window is small
SILENT_REFUSAL_HINT = 512  # tokens: a larger input may be what a silent server refused


@dataclass(frozen=True)
class RemoteOptions:
    """Where the server is and how to talk to it."""

    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 60.0
    context_size: int | None = None
    profile: str | None = None


def _json_schema_refused(payload: dict[str, Any], body: str) -> bool:
    response_format = payload.get("response_format") or {}
    return response_format.get("type") == "json_schema" and "response_format" in body


@dataclass
class _Streamed:
    """What a streamed answer has produced so far, and when."""

    clock: AnswerClock = field(default_factory=AnswerClock)
    produced: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    reason: FinishReason = "stop"
    calls: dict[int, dict[str, str]] = field(default_factory=dict)  # by index, as they stream

    def finished(self, estimate: int, seed: int | None) -> Finished:
        prompt = int(self.usage.get("prompt_tokens") or estimate)
        completion = int(self.usage.get("completion_tokens") or self.produced)
        return self.clock.finished(self.reason, Usage(prompt, completion), seed=seed)


class OpenAIBackend:
    """Chat completions from a remote server, streamed as typed events."""

    def __init__(self, options: RemoteOptions) -> None:
        import httpx

        self._options = options
        # Lowered when the server refuses an input and names a smaller window, so that the
        # overflow policies fit the next turn of a chat to what the server really holds.
        self._window = options.context_size or DEFAULT_CONTEXT
        self._key = os.environ.get(options.api_key_env or "", "") if options.api_key_env else ""
        if options.api_key_env and not self._key:
            raise UsageError(f"the environment variable {options.api_key_env} is not set")
        headers = {"Accept": "text/event-stream"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        timeout = httpx.Timeout(options.timeout, connect=min(options.timeout, 10.0))
        self._client = httpx.Client(base_url=options.base_url, headers=headers, timeout=timeout)

    @property
    def details(self) -> ModelDetails:
        where = f"profile {self._options.profile}" if self._options.profile else "remote"
        return ModelDetails(
            name=self._options.model,
            path=self._options.base_url,
            architecture=where,
            quantization="server",
            context_size=self._window,
            trained_context=None,
            template_source="the server's",
        )

    @property
    def notices(self) -> Sequence[str]:
        return ()

    def facts(self) -> dict[str, Any]:
        """What a session records about this backend (never the key)."""
        return {
            "name": self._options.model,
            "backend": "openai",
            "base_url": self._options.base_url,
            "profile": self._options.profile,
        }

    def count_tokens(self, messages: Sequence[Message], tools: ToolRequest | None = None) -> int:
        # The server's tokenizer is not at hand: about 3.5 characters per token, plus overhead.
        text = sum(
            len(m.content) + sum(len(c.arguments) + 16 for c in m.tool_calls) for m in messages
        )
        if tools is not None and tools.choice != "none":
            text += len(json.dumps([tool_dict(t) for t in tools.tools]))
        media = sum(len(media_of(m.content)) for m in messages) * MEDIA_TOKENS_GUESS
        return text * 2 // 7 + 4 * len(messages) + 2 + media

    def media_facts(self) -> MediaFacts:
        """A server is sent what it is given; its model's refusal is one line (exit 2)."""
        return MediaFacts(True, True, projector=self._options.base_url, known=False)

    def prepare_media(self, item: MediaItem) -> float:
        return 0.0

    def token_bytes(self) -> int | None:
        return None

    def _hide(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def server_window(self, model: str) -> int | None:
        """The server's context per request where it says it, asked in at most two short GETs.

        llama-server's ``/props`` first (its per-slot ``n_ctx``), then vLLM's
        ``max_model_len`` in ``/models``. Any failure gives None and the fallback stays;
        a server that refuses a long input is still reported as an overflow.
        """
        import httpx

        probes = (
            (f"{server_root(self._options.base_url)}/props", window_from_props),
            ("/models", lambda body: window_from_models(body, model)),
        )
        for url, read in probes:
            try:
                body = self._fetch_small(url)
            except (httpx.TimeoutException, httpx.ConnectError):
                return None  # unreachable or slow: the request itself will say so, once
            except httpx.HTTPError:
                continue
            window = read(body) if body is not None else None
            if window is not None:
                return window
        return None

    def _fetch_small(self, url: str) -> bytes | None:
        """The body of a GET if it is 200 and under PROBE_LIMIT, within about PROBE_TIMEOUT."""
        import httpx

        seconds = min(self._options.timeout, PROBE_TIMEOUT)
        deadline = time.monotonic() + seconds
        headers = {"Accept": "application/json"}
        with self._client.stream("GET", url, headers=headers, timeout=seconds) as response:
            if response.status_code != 200:
                return None
            body = bytearray()
            for piece in response.iter_bytes():
                body += piece
                if len(body) > PROBE_LIMIT or time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer about the window is too long or too slow")
        return bytes(body)

    def _refused(self, refusal: ContextRefusal, estimate: int) -> ContextOverflowError:
        """The context error for a server's refusal; a smaller window it names is adopted."""
        needed = refusal.prompt_tokens
        window = refusal.window
        assumed = self.details.context_size
        size = f"{needed:,} tokens" if needed else f"about {estimate:,} tokens"
        holds = f"holds {window:,}" if window else "cannot hold it"
        ctx = f"--ctx {window}" if window and window < assumed else "a smaller --ctx"
        self._window = min(window or assumed, assumed)
        return ContextOverflowError(
            f"the input is {size} but the server's context window {holds} (the server refused "
            f"it; try {ctx} with --on-overflow truncate|summarize, or --chunked for long "
            "documents)",
            needed=needed or estimate,
            available=window or assumed,
        )

    def _fail(self, status: int, body: str, estimate: int = 0) -> Exception:
        refusal = context_refusal(status, body)
        if refusal is not None:
            return self._refused(refusal, estimate)
        detail = self._hide(" ".join(body.split())[:200])
        if status in (401, 403):
            via = f" (check ${self._options.api_key_env})" if self._options.api_key_env else ""
            return RemoteError(f"the server refused the request: HTTP {status}{via}: {detail}")
        if status == 404:
            return ModelError(
                f"the server has no model {self._options.model!r} or no chat endpoint "
                f"(HTTP 404): {detail}"
            )
        return RemoteError(f"the server answered HTTP {status}: {detail}")

    def _network(self, exc: Exception) -> RemoteError:
        import httpx

        url = self._options.base_url
        if isinstance(exc, httpx.ConnectTimeout):
            return RemoteError(f"no connection to {url} within {self._options.timeout:.0f} s")
        if isinstance(exc, httpx.ReadTimeout):
            return RemoteError(
                f"{url} sent nothing for {self._options.timeout:.0f} s; the stream was closed"
            )
        if isinstance(exc, httpx.ConnectError):
            return RemoteError(f"cannot connect to {url}: {self._hide(str(exc)) or 'refused'}")
        return RemoteError(
            f"connection to {url} failed: {type(exc).__name__}: {self._hide(str(exc))}"
        )

    def _payload(
        self, messages: Sequence[Message], options: SamplingOptions, tools: ToolRequest | None
    ) -> dict[str, Any]:
        if options.grammar and options.schema is None:
            raise UsageError("--grammar needs the local backend; use --schema with servers")
        body: dict[str, Any] = {
            "model": self._options.model,
            "messages": [message_dict(m, content_of(m.content), "hermes", True) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": options.temperature,
            "top_p": options.top_p,
            # Understood by llama-server, vLLM and Ollama's OpenAI API; ignored elsewhere.
            "top_k": options.top_k,
            "min_p": options.min_p,
            "repeat_penalty": options.repeat_penalty,
        }
        if options.max_tokens is not None:
            body["max_tokens"] = options.max_tokens
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop:
            body["stop"] = list(options.stop)
        if options.think != "auto":
            # llama-server (--jinja) and vLLM pass these to the model's template.
            body["chat_template_kwargs"] = {"enable_thinking": options.think == "on"}
        if options.schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": options.schema, "strict": True},
            }
        if tools is not None and tools.tools:
            body["tools"] = [tool_dict(t) for t in tools.tools]
            choice = tools.choice
            named = {"type": "function", "function": {"name": choice}}
            body["tool_choice"] = choice if choice in ("auto", "required", "none") else named
        return body

    def list_models(self) -> list[str]:
        import httpx

        try:
            response = self._client.get("/models")
        except httpx.HTTPError as exc:
            raise self._network(exc) from None
        if response.status_code != 200:
            raise self._fail(response.status_code, response.text)
        try:
            return [str(m["id"]) for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise RemoteError("the server's model list is not in the OpenAI format") from None

    def stream(
        self,
        messages: Sequence[Message],
        options: SamplingOptions,
        cancel: Cancellation,
        tools: ToolRequest | None = None,
    ) -> Iterator[Event]:
        payload = self._payload(messages, options, tools)
        events = self._generate(payload, options, cancel, self.count_tokens(messages, tools))
        # Servers that do not separate the thinking themselves leave <think> in the content.
        return split_events(events, TagSplitter(*TAGS["think"]))

    def _open(self, payload: dict[str, Any], cancel: Cancellation, estimate: int) -> Any:
        """POST the request, retrying 429 and 5xx a bounded number of times."""
        import httpx

        model = self._options.model
        for attempt in range(MAX_RETRIES + 1):
            request = self._client.build_request("POST", "/chat/completions", json=payload)
            try:
                response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._network(exc) from None
            if response.status_code == 200:
                return response
            body = response.read().decode("utf-8", errors="replace")
            response.close()
            if _json_schema_refused(payload, body):
                # llama-cpp-python's server knows only {"type": "json_object", "schema": ...}.
                schema = payload["response_format"]["json_schema"]["schema"]
                payload = {**payload, "response_format": {"type": "json_object", "schema": schema}}
                continue
            refused = sends_media(payload) and media_refusal(response.status_code, body, model)
            if refused:
                raise refused
            retryable = response.status_code == 429 or response.status_code >= 500
            if not retryable or attempt == MAX_RETRIES or cancel.cancelled:
                raise self._fail(response.status_code, body, estimate)
            delay = 0.5 * 2**attempt
            retry_after = response.headers.get("Retry-After", "").strip()
            if retry_after.isascii() and retry_after.isdigit():  # "²" is a digit to Python
                delay = float(retry_after)
            if delay > MAX_RETRY_AFTER:
                raise self._fail(response.status_code, body, estimate)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _generate(
        self, payload: dict[str, Any], options: SamplingOptions, cancel: Cancellation, estimate: int
    ) -> Iterator[Event]:
        import httpx

        progress = _Streamed()
        response = None
        try:
            with cancel.interrupting():
                response = self._open(payload, cancel, estimate)
                yield from self._read(response, cancel, progress, estimate)
        except KeyboardInterrupt:
            progress.reason = "interrupted"
        except httpx.RemoteProtocolError:
            raise RemoteError(
                "the server cut the stream in the middle of the answer; the part received is kept"
                if progress.produced
                else "the server closed the connection without an answer"
            ) from None
        except httpx.HTTPError as exc:
            raise self._network(exc) from None
        finally:
            if response is not None:
                response.close()
        yield progress.finished(estimate, options.seed)

    def _read(
        self, response: Any, cancel: Cancellation, progress: _Streamed, estimate: int
    ) -> Iterator[Event]:
        """The answer's text from the server-sent events, noting usage and finish reason."""
        for event in sse_events(response.iter_text()):
            if cancel.cancelled:
                progress.reason = "interrupted"
                return
            data = event.data.strip()
            if not data:
                continue  # a keep-alive
            if data == "[DONE]":
                yield from _finished_calls(progress)
                return
            chunk = self._parse(data, estimate)
            progress.usage = chunk.get("usage") or progress.usage
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                # llama-server and vLLM send the thinking apart (older vLLM as "reasoning").
                thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
                if thought and isinstance(thought, str):
                    progress.clock.text_shown()
                    progress.produced += 1
                    yield ThinkingDelta(thought)
                text = delta.get("content") or ""
                if text:
                    progress.clock.text_shown()
                    progress.produced += 1
                    yield TextDelta(text)
                _gather_calls(delta.get("tool_calls"), progress)
                if choice.get("finish_reason") == "length":
                    progress.reason = "length"
        yield from _finished_calls(progress)
        if progress.produced == 0 and not progress.usage:
            # llama-cpp-python's server refuses a streamed input too long for it this way.
            maybe = (
                f"; the input (about {estimate} tokens) may be longer than its context window: "
                "say that window with --ctx"
                if estimate > SILENT_REFUSAL_HINT
                else ""
            )
            raise RemoteError(f"the server closed the stream before answering{maybe}")

    def _parse(self, data: str, estimate: int) -> dict[str, Any]:
        try:
            chunk = loads_json(data)
        except json.JSONDecodeError:
            raise RemoteError(
                f"the server sent a malformed chunk: {self._hide(data[:80])!r}"
            ) from None
        if not isinstance(chunk, dict):
            raise RemoteError("the server sent a chunk that is not a JSON object")
        if "error" in chunk:
            # Some servers refuse inside the stream, after a 200.
            refusal = context_refusal(400, chunk)
            if refusal is not None:
                raise self._refused(refusal, estimate)
            raise RemoteError(
                f"the server reported an error: {self._hide(str(chunk['error']))[:200]}"
            )
        return chunk

    def close(self) -> None:
        self._client.close()


def _gather_calls(deltas: Any, progress: _Streamed) -> None:
    """Join the fragments of streamed calls: an id and a name first, then pieces of the
    arguments, each tagged with the index of its call."""
    for delta in deltas if isinstance(deltas, list) else ():
        if not isinstance(delta, dict):
            continue
        index = delta.get("index")
        call = progress.calls.setdefault(
            index if isinstance(index, int) else len(progress.calls),
            {"id": "", "name": "", "arguments": ""},
        )
        function = delta.get("function")
        function = function if isinstance(function, dict) else {}
        if isinstance(delta.get("id"), str):
            call["id"] = call["id"] or delta["id"]
        for key in ("name", "arguments"):
            value = function.get(key)
            if isinstance(value, str):
                call[key] += value
        progress.clock.text_shown()
        progress.produced += 1


def _finished_calls(progress: _Streamed) -> Iterator[Event]:
    """The calls gathered so far, in order, once the reply is over; the reason says so."""
    calls, progress.calls = progress.calls, {}
    for _, call in sorted(calls.items()):
        if call["name"]:
            if progress.reason != "interrupted":
                progress.reason = "tool_calls"
            arguments = call["arguments"] or "{}"
            yield ToolCalled(ToolCall(call["id"] or new_call_id("hermes"), call["name"], arguments))
