"""Request and response models of ``POST /v1/chat/completions``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr

from llmasos.server.openai.common import OpenAIModel, OpenAISamplingRequest, Usage


class TextPart(OpenAIModel):
    type: Literal["text"]
    text: str


class ImageURL(OpenAIModel):
    url: str
    detail: str | None = None


class ImagePart(OpenAIModel):
    """An image (``image_url``: a data: URL, or http(s) where the server allows) or a part
    type the kernel does not take (``input_audio``, ``file``)."""

    type: Literal["image_url", "input_audio", "file", "image"]
    image_url: ImageURL | str | None = None
    _data: bytes | None = PrivateAttr(default=None)
    """The image's bytes, fetched and checked, when it goes to a model that sees
    (`llmasos.server.vision`); the kernel gets them as an image part."""

    def url(self) -> str | None:
        if isinstance(self.image_url, ImageURL):
            return self.image_url.url
        return self.image_url

    @property
    def data(self) -> bytes | None:
        return self._data

    def with_data(self, data: bytes) -> ImagePart:
        part = self.model_copy(update={"image_url": None})
        part._data = data
        return part


class FunctionCallParam(OpenAIModel):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallParam(OpenAIModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallParam


class ChatMessageParam(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | ImagePart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None


class FunctionDefinition(OpenAIModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolParam(OpenAIModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedToolChoiceFunction(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"] = "function"
    function: NamedToolChoiceFunction


class JsonSchemaSpec(OpenAIModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class ChatCompletionRequest(OpenAISamplingRequest):
    """OpenAI's chat request; unset sampling fields keep the model's defaults."""

    messages: list[ChatMessageParam] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[ToolParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    ignore_eos: bool | None = Field(
        None, description="vLLM extension: keep generating past end-of-sequence (benchmarks)."
    )
    metadata: dict[str, str | bool] | None = Field(
        None,
        description='Key-value pairs; "memory": "true"/"false" turns recall of the user\'s '
        "memories on or off for this request.",
    )


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None
    stopped_by: str | None = Field(
        None, description="LLMasOS: what cut the reply short (repetition_guard ...)."
    )
    repeated_tool_calls: list[ToolCallOut] | None = Field(
        None,
        description="LLMasOS, tool_choice auto: calls the model made whose results the "
        "conversation already held; the server asked it for a text answer instead.",
    )


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None
    memory_ids: list[str] | None = None
    """LLMasOS: the memory items put into the prompt (when memory is on)."""
