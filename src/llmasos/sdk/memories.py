"""``Client.memories`` / ``AsyncClient.memories``: the calling user's long-term memory, and
recommendations.

`Memories` (blocking) and `AsyncMemories` (awaited) wrap ``/v1/memories``: `add` (one fact,
or facts the model extracts from ``messages``), `list`, `search`, `get`, `update`, `delete`
and `clear` (forget everything). Both send the same request tuples, built by one function per
call, so only the signatures are written twice (as `Client` and `AsyncClient` are).
Items are `Memory` values. With an API key the memory is the key's user's; an app's key
needs the manifest permission ``memory``.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RequestFunction = Callable[[str, str, Any], Any]
AsyncRequestFunction = Callable[[str, str, Any], Awaitable[Any]]


@dataclass(frozen=True)
class Memory:
    id: str
    text: str
    kind: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0
    score: float | None = None
    status: str | None = None
    """After `Memories.add`: ``created``, or ``existing`` when it was already remembered."""


@dataclass(frozen=True)
class Recommendation:
    type: str
    name: str
    score: float
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def memory_from_dict(data: Mapping[str, Any]) -> Memory:
    return Memory(
        id=str(data["id"]),
        text=str(data.get("text", "")),
        kind=str(data.get("kind", "")),
        source=str(data.get("source", "")),
        metadata=dict(data.get("metadata") or {}),
        created_at=int(data.get("created_at") or 0),
        updated_at=int(data.get("updated_at") or 0),
        score=data.get("score"),
        status=data.get("status"),
    )


Call = tuple[str, str, Any]
"""(method, path, body) of one request; the sync and async classes send the same ones."""


def _add_call(
    text: str | None,
    messages: Sequence[Mapping[str, str]] | None,
    kind: str,
    metadata: Mapping[str, Any] | None,
    model: str | None,
) -> Call:
    body: dict[str, Any] = {"kind": kind, "metadata": dict(metadata or {})}
    if text is not None:
        body["text"] = text
    if messages is not None:
        body["messages"] = [dict(m) for m in messages]
        if model is not None:
            body["model"] = model
    return "POST", "/v1/memories", body


def _list_call(kind: str | None, metadata: Mapping[str, Any] | None, limit: int) -> Call:
    import json
    from urllib.parse import urlencode

    params: dict[str, Any] = {"limit": limit}
    if kind:
        params["kind"] = kind
    if metadata:
        params["metadata"] = json.dumps(dict(metadata))
    return "GET", f"/v1/memories?{urlencode(params)}", None


def _search_call(
    query: str,
    k: int,
    filters: Mapping[str, Any] | None,
    kind: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Call:
    body: dict[str, Any] = {"query": query, "k": k, "filters": dict(filters or {})}
    if kind is not None:
        body["kind"] = kind
    if since is not None:
        body["since"] = since.isoformat()
    if until is not None:
        body["until"] = until.isoformat()
    return "POST", "/v1/memories/search", body


def _update_call(
    memory_id: str, text: str | None, kind: str | None, metadata: Mapping[str, Any] | None
) -> Call:
    body = {"text": text, "kind": kind, "metadata": None if metadata is None else dict(metadata)}
    return "PATCH", f"/v1/memories/{memory_id}", {k: v for k, v in body.items() if v is not None}


def _items(data: Mapping[str, Any]) -> list[Memory]:
    return [memory_from_dict(item) for item in data["data"]]


class Memories:
    """The memory endpoints of one client (blocking)."""

    def __init__(self, request: RequestFunction) -> None:
        self._request = request

    def _send(self, call: Call) -> Any:
        return self._request(*call)

    def add(
        self,
        text: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        kind: str = "fact",
        metadata: Mapping[str, Any] | None = None,
        model: str | None = None,
    ) -> list[Memory]:
        """Remember ``text``, or what the model extracts from ``messages``."""
        return _items(self._send(_add_call(text, messages, kind, metadata, model)))

    def list(
        self,
        *,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 100,
    ) -> list[Memory]:
        """Items newest first."""
        return _items(self._send(_list_call(kind, metadata, limit)))

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> builtins.list[Memory]:
        """The ``k`` most relevant items, best first, each with a ``score``."""
        return _items(self._send(_search_call(query, k, filters, kind, since, until)))

    def get(self, memory_id: str) -> Memory:
        return memory_from_dict(self._send(("GET", f"/v1/memories/{memory_id}", None)))

    def update(
        self,
        memory_id: str,
        *,
        text: str | None = None,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Memory:
        return memory_from_dict(self._send(_update_call(memory_id, text, kind, metadata)))

    def delete(self, memory_id: str) -> None:
        self._send(("DELETE", f"/v1/memories/{memory_id}", None))

    def clear(self) -> int:
        """Forget everything; how many items there were."""
        return int(self._send(("DELETE", "/v1/memories", None))["deleted"])

    def use_in_chat(self, enabled: bool) -> None:
        """Whether chat completions and responses get relevant memories in their prompt."""
        self._send(("POST", "/v1/memories/settings", {"chat": enabled}))


class AsyncMemories:
    """The memory endpoints of one `AsyncClient`: the same calls as `Memories`, awaited."""

    def __init__(self, request: AsyncRequestFunction) -> None:
        self._request = request

    async def _send(self, call: Call) -> Any:
        return await self._request(*call)

    async def add(
        self,
        text: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        kind: str = "fact",
        metadata: Mapping[str, Any] | None = None,
        model: str | None = None,
    ) -> list[Memory]:
        """Remember ``text``, or what the model extracts from ``messages``."""
        return _items(await self._send(_add_call(text, messages, kind, metadata, model)))

    async def list(
        self,
        *,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 100,
    ) -> list[Memory]:
        """Items newest first."""
        return _items(await self._send(_list_call(kind, metadata, limit)))

    async def search(
        self,
        query: str,
        *,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> builtins.list[Memory]:
        """The ``k`` most relevant items, best first, each with a ``score``."""
        return _items(await self._send(_search_call(query, k, filters, kind, since, until)))

    async def get(self, memory_id: str) -> Memory:
        return memory_from_dict(await self._send(("GET", f"/v1/memories/{memory_id}", None)))

    async def update(
        self,
        memory_id: str,
        *,
        text: str | None = None,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Memory:
        return memory_from_dict(await self._send(_update_call(memory_id, text, kind, metadata)))

    async def delete(self, memory_id: str) -> None:
        await self._send(("DELETE", f"/v1/memories/{memory_id}", None))

    async def clear(self) -> int:
        """Forget everything; how many items there were."""
        return int((await self._send(("DELETE", "/v1/memories", None)))["deleted"])

    async def use_in_chat(self, enabled: bool) -> None:
        """Whether chat completions and responses get relevant memories in their prompt."""
        await self._send(("POST", "/v1/memories/settings", {"chat": enabled}))


def recommendations_from(data: Mapping[str, Any]) -> list[Recommendation]:
    return [
        Recommendation(
            type=str(item["type"]),
            name=str(item["name"]),
            score=float(item.get("score", 0.0)),
            reason=str(item.get("reason", "")),
            detail=dict(item.get("detail") or {}),
        )
        for item in data["data"]
    ]
