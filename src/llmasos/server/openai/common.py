"""Pydantic pieces shared by the OpenAI endpoint families: the base model, usage, logprobs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmasos.kernel.protocol import GenerateOutput, TokenInfo


class OpenAIModel(BaseModel):
    """Request models ignore unknown fields (clients send extras) but check known ones."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class VLLMExtensions(OpenAIModel):
    """Sampling and scheduling fields OpenAI lacks, accepted in the body as vLLM does."""

    top_k: int | None = Field(None, description="Sample from the k most likely tokens (0: off).")
    min_p: float | None = Field(None, description="Drop tokens below min_p * top probability.")
    repetition_penalty: float | None = Field(None, description="Penalty for repeated tokens.")
    priority: int = Field(0, description="Lower runs earlier under the priority policy.")
    keep_alive: float | str | None = Field(
        None, description="How long the model stays loaded after this request ('5m', 0, -1)."
    )


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None


def usage_of(outputs: list[GenerateOutput]) -> Usage:
    """Summed usage of the final deltas of one or more requests."""
    prompt = sum(o.prompt_tokens for o in outputs)
    completion = sum(o.completion_tokens for o in outputs)
    cached = sum(o.cached_tokens for o in outputs)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


def chat_logprob_entries(tokens: list[TokenInfo]) -> list[dict[str, Any]]:
    """Tokens in chat's ``logprobs.content`` shape."""
    entries: list[dict[str, Any]] = []
    for token in tokens:
        if token.logprob is None:
            continue
        entries.append(
            {
                "token": token.text,
                "logprob": token.logprob,
                "bytes": list(token.text.encode("utf-8")),
                "top_logprobs": [
                    {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}
                    for text, lp in token.top_logprobs
                ],
            }
        )
    return entries


def final_output(outputs: list[GenerateOutput]) -> GenerateOutput:
    """The last delta (which carries the finish reason and the usage)."""
    return outputs[-1]


def finish_reason(output: GenerateOutput) -> str:
    reason = output.finish_reason or "stop"
    return "stop" if reason == "abort" else reason
