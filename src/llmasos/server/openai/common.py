"""Pydantic pieces shared by the OpenAI endpoint families: the base model, usage, logprobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from llmasos.kernel.interface import GenerateOutput, GenerateRequest, TokenInfo
from llmasos.server.context import tenant_for
from llmasos.server.sampling import logit_bias_by_token, stop_sequences
from llmasos.types import SamplingParams


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
    repetition_guard: bool | None = Field(
        None,
        description="LLMasOS: false lets the reply repeat itself; by default a reply that "
        "loops is stopped with finish_reason 'length' and stopped_by 'repetition_guard'.",
    )


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class OpenAISamplingRequest(VLLMExtensions):
    """The fields chat and completion requests share; unset sampling fields keep the
    model's defaults."""

    model: str | None = Field(None, description="Store name; omitted means the default model.")
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=16)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


def shared_sampling(body: OpenAISamplingRequest) -> dict[str, Any]:
    """The sampling fields both endpoints map the same way, for `build_sampling`."""
    return {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "min_p": body.min_p,
        "repetition_penalty": body.repetition_penalty,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "seed": body.seed,
        "stop": stop_sequences(body.stop),
        "logit_bias": logit_bias_by_token(body.logit_bias),
        "repetition_guard": body.repetition_guard,
    }


class ChoiceRequestBody(Protocol):
    """What `choice_requests` reads from a chat or completion request body."""

    model: str | None
    n: int
    user: str | None
    priority: int
    keep_alive: float | str | None


def choice_requests(
    body: ChoiceRequestBody,
    contents: list[dict[str, Any]],
    sampling: SamplingParams,
    explicit: frozenset[str],
    request_id: str,
) -> list[GenerateRequest]:
    """One kernel request per content (a prompt, or messages) per choice (``n``).

    With ``n > 1`` and a seed, choice ``i`` of each content samples with ``seed + i``, so the
    choices differ but stay reproducible. Ids get a ``-index`` suffix when there are several.
    """
    total = len(contents) * body.n
    requests = []
    for position, content in enumerate(contents):
        for choice in range(body.n):
            index = position * body.n + choice
            choice_sampling = sampling
            if body.n > 1 and sampling.seed is not None:
                choice_sampling = sampling.with_changes(seed=sampling.seed + choice)
            requests.append(
                GenerateRequest(
                    model=body.model,
                    sampling=choice_sampling,
                    apply_model_defaults=True,
                    explicit=explicit,
                    priority=body.priority,
                    tenant=tenant_for(body.user),
                    keep_alive="" if body.keep_alive is None else body.keep_alive,
                    request_id=request_id if total == 1 else f"{request_id}-{index}",
                    **content,
                )
            )
    return requests


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


def stopped_by_field(output: GenerateOutput) -> dict[str, str]:
    """``{"stopped_by": ...}`` for a choice the kernel cut short, else nothing."""
    return {"stopped_by": output.stopped_by} if output.stopped_by else {}


def finish_reason(output: GenerateOutput) -> str:
    reason = output.finish_reason or "stop"
    return "stop" if reason == "abort" else reason


def list_page(items: Sequence[Any], limit: int, key: str = "id") -> dict[str, Any]:
    """An OpenAI list page (``data``, ``first_id``, ``last_id``, ``has_more``) from up to
    ``limit + 1`` items that have ``to_dict()``."""
    data = [item.to_dict() for item in items[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0][key] if data else None,
        "last_id": data[-1][key] if data else None,
        "has_more": len(items) > limit,
    }
