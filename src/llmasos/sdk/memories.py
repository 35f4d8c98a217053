"""``Client.memories``: the calling user's long-term memory, and ``Client.recommendations``.

`Memories` wraps ``/v1/memories``: `add` (one fact, or facts the model extracts from
``messages``), `list`, `search`, `get`, `update`, `delete` and `clear` (forget everything).
Items are `Memory` values. With an API key the memory is the key's user's; an app's key
needs the manifest permission ``memory``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

RequestFunction = Callable[[str, str, Any], Any]


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


class Memories:
    """The memory endpoints of one client (blocking)."""

    def __init__(self, request: RequestFunction) -> None:
        self._request = request

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
        body: dict[str, Any] = {"kind": kind, "metadata": dict(metadata or {})}
        if text is not None:
            body["text"] = text
        if messages is not None:
            body["messages"] = [dict(m) for m in messages]
            if model is not None:
                body["model"] = model
        data = self._request("POST", "/v1/memories", body)
        return [memory_from_dict(item) for item in data["data"]]

    def list(
        self,
        *,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 100,
    ) -> list[Memory]:
        """Items newest first."""
        import json
        from urllib.parse import urlencode

        params: dict[str, Any] = {"limit": limit}
        if kind:
            params["kind"] = kind
        if metadata:
            params["metadata"] = json.dumps(dict(metadata))
        data = self._request("GET", f"/v1/memories?{urlencode(params)}", None)
        return [memory_from_dict(item) for item in data["data"]]

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
        body: dict[str, Any] = {"query": query, "k": k, "filters": dict(filters or {})}
        if kind is not None:
            body["kind"] = kind
        if since is not None:
            body["since"] = since.isoformat()
        if until is not None:
            body["until"] = until.isoformat()
        data = self._request("POST", "/v1/memories/search", body)
        return [memory_from_dict(item) for item in data["data"]]

    def get(self, memory_id: str) -> Memory:
        return memory_from_dict(self._request("GET", f"/v1/memories/{memory_id}", None))

    def update(
        self,
        memory_id: str,
        *,
        text: str | None = None,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Memory:
        body = {
            "text": text,
            "kind": kind,
            "metadata": None if metadata is None else dict(metadata),
        }
        body = {key: value for key, value in body.items() if value is not None}
        return memory_from_dict(self._request("PATCH", f"/v1/memories/{memory_id}", body))

    def delete(self, memory_id: str) -> None:
        self._request("DELETE", f"/v1/memories/{memory_id}", None)

    def clear(self) -> int:
        """Forget everything; how many items there were."""
        return int(self._request("DELETE", "/v1/memories", None)["deleted"])

    def use_in_chat(self, enabled: bool) -> None:
        """Whether chat completions get relevant memories put into their prompt."""
        self._request("POST", "/v1/memories/settings", {"chat": enabled})


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
