"""Typed results of SDK calls (plain dataclasses), shared by `Client`, `AsyncClient` and `LLM`.

Named-service results reuse `llmasos.services.interface.ServiceResult`, so a call gives the
same object in-process and over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmasos.services.interface import ServiceResult, ServiceUsage

__all__ = [
    "ChatChunk",
    "ChatResponse",
    "Completion",
    "Embeddings",
    "ModelInfo",
    "ServiceInfo",
    "ServiceResult",
    "ServiceUsage",
    "Usage",
]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        return cls(
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            total_tokens=int(data.get("total_tokens", 0)),
        )


@dataclass(frozen=True)
class ChatResponse:
    """A chat completion's first choice."""

    text: str
    model: str
    finish_reason: str | None
    usage: Usage
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    memory_ids: list[str] = field(default_factory=list)
    """The memories put into the prompt (when memory is on for the request)."""


@dataclass(frozen=True)
class ChatChunk:
    """A streamed piece of text; the last one has a ``finish_reason``."""

    text: str
    model: str
    finish_reason: str | None = None


@dataclass(frozen=True)
class Completion:
    """A raw-prompt completion's first choice."""

    text: str
    model: str
    finish_reason: str | None
    usage: Usage


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    model: str
    prompt_tokens: int = 0


@dataclass(frozen=True)
class ModelInfo:
    id: str
    created: int = 0
    owned_by: str = ""


@dataclass(frozen=True)
class ServiceInfo:
    """A named service as ``GET /v1/services`` describes it."""

    name: str
    description: str
    input_schema: dict[str, Any]
    text_input: str | None = None
    output_schema: dict[str, Any] | str | None = None
    model: str | None = None


def service_result_from_dict(data: dict[str, Any]) -> ServiceResult:
    usage = data.get("usage") or {}
    return ServiceResult(
        service=str(data.get("service", "")),
        model=str(data.get("model", "")),
        output=data.get("output"),
        usage=ServiceUsage(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            calls=int(usage.get("calls", 0)),
            chunks=int(usage.get("chunks", 1)),
        ),
        details=data.get("details") if isinstance(data.get("details"), dict) else None,
    )
