"""Request and response models of ``POST /v1/completions`` (raw prompts, no chat template)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from llmasos.server.openai.chat.protocol import StreamOptions
from llmasos.server.openai.common import Usage, VLLMExtensions


class CompletionRequest(VLLMExtensions):
    model: str | None = Field(None, description="Store name; omitted means the default model.")
    prompt: str | list[str] = Field(..., description="A prompt or a list of prompts.")
    echo: bool = Field(False, description="Return the prompt before the completion.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
