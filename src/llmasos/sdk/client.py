"""HTTP clients of an LLMasOS server: `Client` (blocking) and `AsyncClient` (asyncio).

Both speak the server's ``/v1`` API and return the typed results of `llmasos.sdk.types`.
The base URL is the ``base_url`` argument, else ``LLMASOS_BASE_URL``, else
``http://127.0.0.1:8000``; ``api_key`` (or ``LLMASOS_API_KEY``) is sent as a Bearer token.
Errors are the `llmasos.errors` classes with the server's message (`llmasos.sdk.errors`).
Sampling keywords (``temperature``, ``max_tokens``, ``top_p``, ``stop``, ``seed`` ...) are
checked here, so a misspelt one fails loudly instead of being ignored by the server.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

import httpx

from llmasos.errors import InvalidRequestError
from llmasos.net import DEFAULT_BASE_URL
from llmasos.sdk.errors import APIConnectionError, error_from_body, error_from_response
from llmasos.sdk.files import Files
from llmasos.sdk.memories import AsyncMemories, Memories, Recommendation, recommendations_from
from llmasos.sdk.tasks import AsyncTasks, Tasks
from llmasos.sdk.types import (
    ChatChunk,
    ChatResponse,
    Completion,
    Embeddings,
    ModelInfo,
    ServiceInfo,
    ServiceResult,
    Usage,
    service_result_from_dict,
)
from llmasos.sdk.workflows import AsyncWorkflows, Workflows

DEFAULT_TIMEOUT = 600.0
SAMPLING_KEYWORDS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "max_tokens",
        "stop",
        "seed",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "response_format",
        "tools",
        "tool_choice",
        "user",
        "priority",
        "keep_alive",
        "metadata",
    }
)
Messages = str | Sequence[Mapping[str, Any]]


def default_base_url() -> str:
    return (os.environ.get("LLMASOS_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def as_messages(messages: Messages) -> list[dict[str, Any]]:
    """A string is one user message."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


def check_sampling(sampling: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(sampling) - SAMPLING_KEYWORDS)
    if unknown:
        known = ", ".join(sorted(SAMPLING_KEYWORDS))
        raise InvalidRequestError(
            f"unknown keyword(s) {unknown} (known: {known})", param=unknown[0]
        )
    return {k: v for k, v in sampling.items() if v is not None}


def _chat_response(data: dict[str, Any]) -> ChatResponse:
    choice = data["choices"][0]
    message = choice.get("message") or {}
    return ChatResponse(
        text=message.get("content") or "",
        model=data.get("model", ""),
        finish_reason=choice.get("finish_reason"),
        usage=Usage.from_dict(data.get("usage")),
        tool_calls=list(message.get("tool_calls") or []),
        raw=data,
        memory_ids=list(data.get("memory_ids") or []),
    )


def _completion(data: dict[str, Any]) -> Completion:
    choice = data["choices"][0]
    return Completion(
        text=choice.get("text") or "",
        model=data.get("model", ""),
        finish_reason=choice.get("finish_reason"),
        usage=Usage.from_dict(data.get("usage")),
    )


def _sse_chunk(line: str) -> ChatChunk | None:
    """One ``data: ...`` line as a chunk; None for other lines and ``[DONE]``."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return None
    data = json.loads(payload)
    if "error" in data:
        raise error_from_body(500, data)
    if not data.get("choices"):
        return None
    choice = data["choices"][0]
    text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
    return ChatChunk(
        text=text, model=data.get("model", ""), finish_reason=choice.get("finish_reason")
    )


def _service_body(
    info: ServiceInfo | None,
    service: str,
    data: str | Mapping[str, Any],
    params: Mapping[str, Any],
    model: str | None,
    parameters: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if isinstance(data, str):
        if info is None or info.text_input is None:
            raise InvalidRequestError(
                f"service {service} has no main text input: pass the input as a dict"
            )
        body: dict[str, Any] = {info.text_input: data}
    else:
        body = dict(data)
    body.update(params)
    if model is not None:
        body["model"] = model
    if parameters:
        body["parameters"] = dict(parameters)
    return body


def _service_info(data: dict[str, Any]) -> ServiceInfo:
    return ServiceInfo(
        name=data["name"],
        description=data.get("description", ""),
        input_schema=data.get("input_schema", {}),
        text_input=data.get("text_input"),
        output_schema=data.get("output_schema"),
        model=data.get("model"),
    )


class _ClientBase:
    def __init__(self, base_url: str | None, api_key: str | None, timeout: float | None) -> None:
        self.base_url = (base_url or default_base_url()).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("LLMASOS_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = timeout
        self._service_infos: dict[str, ServiceInfo] = {}

    def _unreachable(self, error: Exception) -> APIConnectionError:
        return APIConnectionError(f"no LLMasOS server answers at {self.base_url}: {error}")

    @staticmethod
    def _chat_body(
        messages: Messages, model: str | None, stream: bool, sampling: Mapping[str, Any]
    ) -> dict[str, Any]:
        body = {"model": model, "messages": as_messages(messages), **check_sampling(sampling)}
        if stream:
            body["stream"] = True
        return {k: v for k, v in body.items() if v is not None}


class Client(_ClientBase):
    """A blocking client. Use it as a context manager, or call `close`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)
        self.memories = Memories(self._request)
        """The calling user's long-term memory (``/v1/memories``)."""
        self.tasks = Tasks(self._request)
        """The calling user's agent tasks (``/v1/tasks``)."""
        self.workflows = Workflows(self._request)
        """The calling user's workflows and their runs (``/v1/workflows``)."""
        self.files = Files(self._http, self._unreachable)
        """The calling user's file space (``/v1/fs``)."""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, response.headers)
        return response.json()

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[ChatChunk]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(
                        response.status_code, response.content, response.headers
                    )
                for line in response.iter_lines():
                    chunk = _sse_chunk(line)
                    if chunk is not None:
                        yield chunk
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    @overload
    def chat(
        self,
        messages: Messages,
        model: str | None = ...,
        *,
        stream: Literal[False] = ...,
        **sampling: Any,
    ) -> ChatResponse: ...
    @overload
    def chat(
        self, messages: Messages, model: str | None = ..., *, stream: Literal[True], **sampling: Any
    ) -> Iterator[ChatChunk]: ...
    def chat(
        self, messages: Messages, model: str | None = None, *, stream: bool = False, **sampling: Any
    ) -> ChatResponse | Iterator[ChatChunk]:
        """A chat completion; with ``stream=True`` an iterator of `ChatChunk`."""
        body = self._chat_body(messages, model, stream, sampling)
        if stream:
            return self._stream("/v1/chat/completions", body)
        return _chat_response(self._request("POST", "/v1/chat/completions", body))

    def chat_stream(
        self, messages: Messages, model: str | None = None, **sampling: Any
    ) -> Iterator[ChatChunk]:
        return self.chat(messages, model, stream=True, **sampling)

    def generate(
        self, prompt: str, model: str | None = None, *, raw: bool = False, **sampling: Any
    ) -> Completion:
        """Complete ``prompt``: as a user message (chat template), or verbatim with ``raw``."""
        if not raw:
            reply = self.chat(prompt, model, **sampling)
            return Completion(reply.text, reply.model, reply.finish_reason, reply.usage)
        body = {"model": model, "prompt": prompt, **check_sampling(sampling)}
        return _completion(self._request("POST", "/v1/completions", body))

    def embed(self, texts: str | Iterable[str], model: str | None = None) -> Embeddings:
        items = [texts] if isinstance(texts, str) else list(texts)
        data = self._request("POST", "/v1/embeddings", {"model": model, "input": items})
        vectors = [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])]
        usage = data.get("usage") or {}
        return Embeddings(vectors, data.get("model", ""), int(usage.get("prompt_tokens", 0)))

    def models(self) -> list[ModelInfo]:
        data = self._request("GET", "/v1/models")
        return [
            ModelInfo(m["id"], int(m.get("created", 0)), m.get("owned_by", ""))
            for m in data["data"]
        ]

    def services(self) -> list[ServiceInfo]:
        return [_service_info(s) for s in self._request("GET", "/v1/services")["data"]]

    def recommendations(self, limit: int = 10) -> list[Recommendation]:
        """Suggested services, apps and next steps for the calling user, best first."""
        return recommendations_from(self._request("GET", f"/v1/recommendations?limit={limit}"))

    def service(self, name: str) -> ServiceInfo:
        if name not in self._service_infos:
            self._service_infos[name] = _service_info(self._request("GET", f"/v1/services/{name}"))
        return self._service_infos[name]

    def call(
        self,
        service: str,
        input: str | Mapping[str, Any],
        *,
        model: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ServiceResult:
        """Call a named service. A string ``input`` fills the service's main text field;
        other inputs (``target_language=``, ``labels=``) are keywords."""
        info = self.service(service) if isinstance(input, str) else None
        body = _service_body(info, service, input, params, model, parameters)
        return service_result_from_dict(self._request("POST", f"/v1/services/{service}", body))


class AsyncClient(_ClientBase):
    """The asyncio twin of `Client`: the same methods, awaited; streams are async iterators."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, api_key, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=timeout
        )
        self.memories = AsyncMemories(self._request)
        """The calling user's long-term memory (``/v1/memories``)."""
        self.tasks = AsyncTasks(self._request)
        """The calling user's agent tasks (``/v1/tasks``)."""
        self.workflows = AsyncWorkflows(self._request)
        """The calling user's workflows and their runs (``/v1/workflows``)."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._http.request(method, path, json=body)
        except httpx.TransportError as error:
            raise self._unreachable(error) from None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, response.content, response.headers)
        return response.json()

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        try:
            async with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_response(
                        response.status_code, response.content, response.headers
                    )
                async for line in response.aiter_lines():
                    chunk = _sse_chunk(line)
                    if chunk is not None:
                        yield chunk
        except httpx.TransportError as error:
            raise self._unreachable(error) from None

    @overload
    async def chat(
        self,
        messages: Messages,
        model: str | None = ...,
        *,
        stream: Literal[False] = ...,
        **sampling: Any,
    ) -> ChatResponse: ...
    @overload
    async def chat(
        self, messages: Messages, model: str | None = ..., *, stream: Literal[True], **sampling: Any
    ) -> AsyncIterator[ChatChunk]: ...
    async def chat(
        self, messages: Messages, model: str | None = None, *, stream: bool = False, **sampling: Any
    ) -> ChatResponse | AsyncIterator[ChatChunk]:
        body = self._chat_body(messages, model, stream, sampling)
        if stream:
            return self._stream("/v1/chat/completions", body)
        return _chat_response(await self._request("POST", "/v1/chat/completions", body))

    def chat_stream(
        self, messages: Messages, model: str | None = None, **sampling: Any
    ) -> AsyncIterator[ChatChunk]:
        return self._stream(
            "/v1/chat/completions", self._chat_body(messages, model, True, sampling)
        )

    async def generate(
        self, prompt: str, model: str | None = None, *, raw: bool = False, **sampling: Any
    ) -> Completion:
        if not raw:
            reply = await self.chat(prompt, model, **sampling)
            return Completion(reply.text, reply.model, reply.finish_reason, reply.usage)
        body = {"model": model, "prompt": prompt, **check_sampling(sampling)}
        return _completion(await self._request("POST", "/v1/completions", body))

    async def embed(self, texts: str | Iterable[str], model: str | None = None) -> Embeddings:
        items = [texts] if isinstance(texts, str) else list(texts)
        data = await self._request("POST", "/v1/embeddings", {"model": model, "input": items})
        vectors = [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])]
        usage = data.get("usage") or {}
        return Embeddings(vectors, data.get("model", ""), int(usage.get("prompt_tokens", 0)))

    async def models(self) -> list[ModelInfo]:
        data = await self._request("GET", "/v1/models")
        return [
            ModelInfo(m["id"], int(m.get("created", 0)), m.get("owned_by", ""))
            for m in data["data"]
        ]

    async def services(self) -> list[ServiceInfo]:
        return [_service_info(s) for s in (await self._request("GET", "/v1/services"))["data"]]

    async def recommendations(self, limit: int = 10) -> list[Recommendation]:
        """Suggested services, apps and next steps for the calling user, best first."""
        data = await self._request("GET", f"/v1/recommendations?limit={limit}")
        return recommendations_from(data)

    async def service(self, name: str) -> ServiceInfo:
        if name not in self._service_infos:
            data = await self._request("GET", f"/v1/services/{name}")
            self._service_infos[name] = _service_info(data)
        return self._service_infos[name]

    async def call(
        self,
        service: str,
        input: str | Mapping[str, Any],
        *,
        model: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ServiceResult:
        info = await self.service(service) if isinstance(input, str) else None
        body = _service_body(info, service, input, params, model, parameters)
        data = await self._request("POST", f"/v1/services/{service}", body)
        return service_result_from_dict(data)
