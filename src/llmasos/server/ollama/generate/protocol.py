"""Request models of ``POST /api/generate`` and ``POST /api/chat`` (field names as Ollama's)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, PrivateAttr

from llmasos.server.ollama.common import LogprobsRequest, OllamaModel, Options


class GenerateBody(LogprobsRequest):
    model: str = Field(..., min_length=1)
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    stream: bool = True
    keep_alive: float | str | None = None
    think: bool | str | None = None
    _image_data: list[bytes] = PrivateAttr(default_factory=list)
    """``images`` decoded and checked, for a model that sees them (`llmasos.server.vision`)."""

    @property
    def image_data(self) -> list[bytes]:
        return self._image_data

    def with_image_data(self, images: list[bytes]) -> GenerateBody:
        body = self.model_copy(update={"images": None})
        body._image_data = images
        return body


class FunctionCallBody(OllamaModel):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ToolCallBody(OllamaModel):
    function: FunctionCallBody


class ChatMessageBody(OllamaModel):
    role: str
    content: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCallBody] | None = None
    tool_name: str | None = None
    thinking: str | None = None
    _image_data: list[bytes] = PrivateAttr(default_factory=list)
    """``images`` decoded and checked, for a model that sees them (`llmasos.server.vision`)."""

    @property
    def image_data(self) -> list[bytes]:
        return self._image_data

    def with_image_data(self, images: list[bytes]) -> ChatMessageBody:
        message = self.model_copy(update={"images": None})
        message._image_data = images
        return message


class ChatBody(LogprobsRequest):
    model: str = Field(..., min_length=1)
    messages: list[ChatMessageBody] | None = None
    tools: list[dict[str, Any]] | None = None
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    stream: bool = True
    keep_alive: float | str | None = None
    think: bool | str | None = None
