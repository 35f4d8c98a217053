"""Request and response models of ``POST /v1/completions`` (raw prompts, no chat template)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from llmasos.server.openai.common import OpenAISamplingRequest, Usage


class CompletionRequest(OpenAISamplingRequest):
    """OpenAI's completion request: raw prompts, no chat template."""

    prompt: str | list[str] = Field(..., description="A prompt or a list of prompts.")
    echo: bool = Field(False, description="Return the prompt before the completion.")
    logprobs: int | None = Field(None, ge=0, le=20)


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None
    stopped_by: str | None = Field(
        None, description="LLMasOS: what cut the reply short (repetition_guard ...)."
    )


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
