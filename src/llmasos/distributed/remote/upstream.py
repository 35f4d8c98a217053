"""One request to a remote provider over the OpenAI wire protocol, and its faults.

`upstream_request` maps a kernel `GenerateRequest` onto an OpenAI request: chat messages to
``/chat/completions``, a raw prompt (``/v1/completions``, Ollama's ``raw``) to
``/completions``, only the sampling fields the caller set, structured output as
``response_format``, tools as ``tools`` (the calls that come back are written as the text
a local model would have generated, so one parser serves both). `UpstreamClient.stream`
always asks for a stream (with ``stream_options.include_usage``), reads the server-sent
events strictly (`SSEDecoder`) and yields `UpstreamDelta`s. Every fault becomes an
`LLMasOSError` naming the remote: a refused key (401/403) and anything malformed or
unreachable are `RemoteProviderError` (502), a timeout is `RequestTimeoutError` (504), the
endpoint's 400 is the caller's `InvalidRequestError`, its 429 a `RateLimitError`. The key
is sent as a bearer token and never appears in a message or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from llmasos.distributed.remote.registry import RemoteProvider
from llmasos.errors import (
    InvalidRequestError,
    LLMasOSError,
    RateLimitError,
    RemoteProviderError,
    RequestTimeoutError,
    UnsupportedError,
)
from llmasos.kernel.interface import GenerateRequest, TokenInfo
from llmasos.kernel.structured import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

logger = logging.getLogger(__name__)

ERROR_BODY_LIMIT = 16 * 1024
"""Bytes of an error response read for its message."""
MESSAGE_LIMIT = 300
CONNECT_TIMEOUT = 10.0

SAMPLING_FIELDS = {
    # SamplingParams field -> OpenAI request field, sent only when the caller set it
    "temperature": "temperature",
    "top_p": "top_p",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "max_tokens": "max_tokens",
    # not OpenAI's, but vLLM, llama.cpp's server, Ollama and LLMasOS read them
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repetition_penalty",
}


@dataclass
class UpstreamDelta:
    """What one stream event of the remote added."""

    text: str = ""
    tokens: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None
    usage: tuple[int, int, int] | None = None
    """``(prompt_tokens, completion_tokens, cached_tokens)`` when the remote reported them."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """Tool call fragments (``index``, ``function.name``, ``function.arguments`` text)."""


ToolFormat = Literal["tagged", "json"]


@dataclass(frozen=True)
class UpstreamRequest:
    """Where to send a request, what, and how its tool calls come back to the kernel's
    callers: ``tagged`` (``<tool_call>{...}</tool_call>`` lines, as under ``tool_choice:
    auto``) or ``json`` (one bare call, as under ``required``); None without tools."""

    path: str
    body: dict[str, Any]
    tool_format: ToolFormat | None = None


class ToolCallCollector:
    """Tool call fragments of a stream, joined, and written as the kernel's callers read
    calls from generated text (`llmasos.kernel.structured.parse_tool_output`)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}

    def add(self, fragments: list[dict[str, Any]]) -> None:
        for position, fragment in enumerate(fragments):
            index = fragment.get("index", position)
            call = self.calls.setdefault(int(index), {"name": "", "arguments": ""})
            function = fragment.get("function") or {}
            call["name"] += str(function.get("name") or "")
            arguments = function.get("arguments")
            call["arguments"] += (
                arguments if isinstance(arguments, str) else json.dumps(arguments or {})
            )

    def text(self, tool_format: ToolFormat | None) -> str:
        calls = []
        for index in sorted(self.calls):
            call = self.calls[index]
            try:
                arguments: Any = json.loads(call["arguments"] or "{}")
            except ValueError:
                arguments = call["arguments"]
            calls.append(json.dumps({"name": call["name"], "arguments": arguments}))
        if not calls:
            return ""
        if tool_format == "json":
            return calls[0]
        return "\n".join(f"{TOOL_CALL_OPEN}{call}{TOOL_CALL_CLOSE}" for call in calls)


def _chat_message(message: Any) -> dict[str, Any]:
    item = dict(message)
    calls = item.get("tool_calls")
    if calls:  # the kernel keeps arguments as dicts; the wire carries JSON text
        item["tool_calls"] = [
            {
                **call,
                "function": {
                    **call.get("function", {}),
                    "arguments": _arguments_text(call.get("function", {}).get("arguments")),
                },
            }
            for call in calls
        ]
    return item


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments or {})


def upstream_request(provider: RemoteProvider, request: GenerateRequest) -> UpstreamRequest:
    """The endpoint path (``/chat/completions`` or ``/completions``) and the JSON body.

    With tools, the kernel's callers constrain the local model with a grammar (``auto``)
    or a call schema (``required``); a remote gets the tools and ``tool_choice`` instead."""
    sampling = request.sampling
    structured = sampling.structured
    tool_format: ToolFormat | None = None
    body: dict[str, Any] = {
        "model": provider.model,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chat = not (request.prompt is not None and request.raw)
    if request.messages is not None:
        messages = [_chat_message(m) for m in request.messages]
    elif request.prompt is not None:
        messages = [{"role": "user", "content": request.prompt}]
    else:
        raise InvalidRequestError("a request needs a prompt or messages", param="messages")
    if chat:
        if not messages:
            raise InvalidRequestError("messages must not be empty", param="messages")
        if request.system is not None and not any(m.get("role") == "system" for m in messages):
            messages.insert(0, {"role": "system", "content": request.system})
        body["messages"] = messages
        path = "/chat/completions"
        if request.tools:
            body["tools"] = [
                tool if "function" in tool else {"type": "function", "function": tool}
                for tool in request.tools
            ]
            required = structured is not None and structured.kind == "json_schema"
            tool_format = "json" if required else "tagged"
            body["tool_choice"] = "required" if required else "auto"
            structured = None  # the plan's constraint is for a local model
    else:
        body["prompt"] = request.prompt
        path = "/completions"
    for name, wire in SAMPLING_FIELDS.items():
        if name in request.explicit and getattr(sampling, name) is not None:
            body[wire] = getattr(sampling, name)
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if sampling.logprobs is not None:
        if chat:
            body["logprobs"] = True
            body["top_logprobs"] = sampling.logprobs
        else:
            body["logprobs"] = sampling.logprobs
    if structured is not None:
        if structured.kind == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif structured.kind == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": structured.schema or {}},
            }
        else:
            raise UnsupportedError(
                f"remote {provider.name!r}: {structured.kind} constraints are not part of the "
                "OpenAI API; use a JSON schema",
                param="response_format",
            )
    return UpstreamRequest(path, body, tool_format)


class SSEDecoder:
    """Server-sent events, strictly: ``data:`` lines joined per event, comments and the
    ``event``/``id``/``retry`` fields allowed, anything else malformed. Yields each event's
    data once its blank line arrives."""

    def __init__(self, remote: str) -> None:
        self.remote = remote
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """One line (without its end); the event's data when ``line`` ends an event."""
        if line == "":
            if not self._data:
                return None
            data, self._data = "\n".join(self._data), []
            return data
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if not colon:
            raise self.malformed(f"a line that is not an SSE field: {line[:80]!r}")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name not in ("event", "id", "retry"):
            raise self.malformed(f"an unknown SSE field {name[:40]!r}")
        return None

    def finish(self) -> str | None:
        """The last event when the stream ended without its blank line."""
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data

    def malformed(self, what: str) -> RemoteProviderError:
        return RemoteProviderError(
            f"remote {self.remote!r} sent a malformed stream: {what}", code="remote_bad_response"
        )


def _scrub(text: str, key: str | None) -> str:
    text = " ".join(text.split())[:MESSAGE_LIMIT]
    return text.replace(key, "***") if key else text


def _error_message(raw: bytes) -> str:
    """The ``error.message`` of an error body (OpenAI's or a plain one), else its text."""
    text = raw[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or error)
        return str(error)
    return text


def transport_error(
    provider: RemoteProvider, error: httpx.HTTPError, key: str | None
) -> LLMasOSError:
    """The error the caller sees when the exchange with the remote itself failed."""
    name = provider.name
    if isinstance(error, httpx.TimeoutException):
        return RequestTimeoutError(f"remote {name!r} did not answer within {provider.timeout:g} s")
    reason = _scrub(str(error), key)
    if isinstance(error, httpx.ConnectError):
        return RemoteProviderError(
            f"remote {name!r} at {provider.url} cannot be reached: {reason}",
            code="remote_unreachable",
        )
    return RemoteProviderError(f"remote {name!r} broke the connection: {reason or 'no reason'}")


def status_error(
    provider: RemoteProvider, response: httpx.Response, raw: bytes, key: str | None
) -> LLMasOSError:
    """The error the caller sees when the remote answered something else than 200."""
    name = provider.name
    status = response.status_code
    retry_after = response.headers.get("retry-after")
    if status in (401, 403):
        hint = f" in ${provider.api_key_env}" if provider.api_key_env else " (none is configured)"
        return RemoteProviderError(
            f"remote {name!r} refused the key{hint} (HTTP {status})", code="remote_auth_failed"
        )
    message = _scrub(_error_message(raw), key)
    if status == 429:
        try:
            wait = float(retry_after) if retry_after else None
        except ValueError:
            wait = None
        return RateLimitError(f"remote {name!r} is rate limiting: {message}", retry_after=wait)
    if status in (400, 413, 422):
        return InvalidRequestError(f"remote {name!r} rejected the request: {message}")
    return RemoteProviderError(f"remote {name!r} failed with HTTP {status}: {message}")


def _usage(data: dict[str, Any]) -> tuple[int, int, int] | None:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    try:
        return (
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            int(cached or 0),
        )
    except (TypeError, ValueError):
        return None


def _logprobs(logprobs: Any) -> list[TokenInfo]:
    """Chat logprobs (``content: [{token, logprob, top_logprobs}]``) as token infos."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return []
    tokens = []
    for entry in logprobs["content"]:
        if not isinstance(entry, dict):
            continue
        top = tuple(
            (str(t.get("token", "")), float(t.get("logprob", 0.0)))
            for t in entry.get("top_logprobs") or []
            if isinstance(t, dict)
        )
        tokens.append(TokenInfo(-1, str(entry.get("token", "")), entry.get("logprob"), top))
    return tokens


def parse_chunk(remote: str, data: dict[str, Any]) -> UpstreamDelta:
    """One chunk (or a whole non-streamed completion) of a chat or text completion."""
    if "error" in data:
        error = data["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise RemoteProviderError(f"remote {remote!r} failed mid-stream: {message}")
    choices = data.get("choices")
    if not isinstance(choices, list):
        raise RemoteProviderError(
            f"remote {remote!r} sent a malformed stream: an event without choices",
            code="remote_bad_response",
        )
    delta = UpstreamDelta(usage=_usage(data))
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        part = choice.get("delta") or choice.get("message") or {}
        text = part.get("content") if isinstance(part, dict) else None
        if text is None:
            text = choice.get("text")
        if text is not None and not isinstance(text, str):
            raise RemoteProviderError(
                f"remote {remote!r} sent a malformed stream: content that is not text",
                code="remote_bad_response",
            )
        delta.text = text or ""
        calls = part.get("tool_calls") if isinstance(part, dict) else None
        if isinstance(calls, list):
            delta.tool_calls = [c for c in calls if isinstance(c, dict)]
        delta.tokens = _logprobs(choice.get("logprobs"))
        reason = choice.get("finish_reason")
        if reason is not None:
            delta.finish_reason = reason if reason in ("stop", "length") else "stop"
    return delta


class UpstreamClient:
    """Requests to remote providers over one pooled httpx client."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _timeout(self, provider: RemoteProvider) -> httpx.Timeout:
        return httpx.Timeout(provider.timeout, connect=min(CONNECT_TIMEOUT, provider.timeout))

    async def stream(
        self, provider: RemoteProvider, call: UpstreamRequest
    ) -> AsyncGenerator[UpstreamDelta, None]:
        """POST the request to the remote; yield its deltas until it is finished."""
        key = provider.api_key()
        name = provider.name
        request = self._http().build_request(
            "POST",
            provider.url + call.path,
            json=call.body,
            headers=self._headers(key),
            timeout=self._timeout(provider),
        )
        try:
            response = await self._http().send(request, stream=True)
            try:
                if response.status_code != 200:
                    raw = await response.aread()
                    logger.warning("remote %s answered HTTP %d", name, response.status_code)
                    raise status_error(provider, response, raw, key)
                kind = response.headers.get("content-type", "").split(";")[0].strip()
                if kind == "application/json":  # a server that does not stream
                    yield parse_chunk(name, self._json(name, await response.aread()))
                    return
                if kind != "text/event-stream":
                    raise RemoteProviderError(
                        f"remote {name!r} answered {kind or 'no content type'}, not a stream "
                        "of server-sent events",
                        code="remote_bad_response",
                    )
                async for delta in self._events(name, response):
                    yield delta
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            raise transport_error(provider, error, key) from error

    async def _events(self, name: str, response: httpx.Response) -> AsyncIterator[UpstreamDelta]:
        decoder = SSEDecoder(name)
        finished = False
        lines = response.aiter_lines()
        while True:
            try:
                line = await anext(lines)
            except StopAsyncIteration:
                data = decoder.finish()
                if data is None:
                    break
            else:
                data = decoder.feed(line.rstrip("\r"))
                if data is None:
                    continue
            if data == "[DONE]":
                return
            delta = parse_chunk(name, self._json(name, data.encode()))
            finished = finished or delta.finish_reason is not None
            yield delta
        if not finished:
            raise decoder.malformed("it ended before the reply finished")

    @staticmethod
    def _json(name: str, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RemoteProviderError(
                f"remote {name!r} sent a malformed stream: an event that is not a JSON object "
                f"({raw[:60].decode('utf-8', 'replace')!r})",
                code="remote_bad_response",
            )
        return data

    async def embed(
        self, provider: RemoteProvider, texts: list[str]
    ) -> tuple[list[list[float]], int]:
        """``POST /embeddings``: the vectors, in order, and the prompt tokens."""
        key = provider.api_key()
        name = provider.name
        try:
            response = await self._http().post(
                provider.url + "/embeddings",
                json={"model": provider.model, "input": texts},
                headers={"Authorization": f"Bearer {key}"} if key else {},
                timeout=self._timeout(provider),
            )
        except httpx.HTTPError as error:
            raise transport_error(provider, error, key) from error
        if response.status_code != 200:
            raise status_error(provider, response, response.content, key)
        data = self._json(name, response.content)
        try:
            items = sorted(data["data"], key=lambda item: item["index"])
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as error:
            raise RemoteProviderError(
                f"remote {name!r} sent malformed embeddings", code="remote_bad_response"
            ) from error
        usage = _usage(data)
        return vectors, usage[0] if usage else 0
