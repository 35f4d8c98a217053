"""A scripted engine client for unit tests of the HTTP layer (no model involved).

It implements `EngineClientInterface` and streams canned deltas; special model names make
it raise the kernel's errors so the server's error mapping can be tested.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from llmasos.errors import (
    ContextLengthExceededError,
    ModelNotFoundError,
    QueueFullError,
    RequestTimeoutError,
)
from llmasos.kernel.interface import (
    EmbedResult,
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    JobRequest,
    PromptCount,
    ResidentModel,
    TokenInfo,
)
from llmasos.kernel.lanes import JobLanes

WEATHER_CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}


def default_script(request: GenerateRequest) -> list[str]:
    """What the fake "model" says: a tool call when constrained to one, else a greeting."""
    structured = request.sampling.structured
    if structured is not None and structured.kind == "json_schema" and structured.schema:
        if "anyOf" in structured.schema or "name" in structured.schema.get("properties", {}):
            text = json.dumps(WEATHER_CALL)
            return [text[:10], text[10:25], text[25:]]
        return ['{"answer":', " 42}"]
    if structured is not None and structured.kind == "json_object":
        return ['{"ok"', ": true}"]
    last = str((request.messages or [{}])[-1].get("content", "")) if request.messages else ""
    if structured is not None and structured.kind == "grammar" and "weather" in last:
        return ["<tool_call>", json.dumps(WEATHER_CALL), "</tool_call>"]
    return ["Hello", " world", "!"]


T = TypeVar("T")


class FakeEngineClient(EngineClientInterface):
    """Streams ``script(request)`` as deltas. Model names trigger errors:
    ``missing`` -> 404, ``too-long`` -> context length, ``busy`` -> queue full,
    ``midfail`` -> an error after the first delta, ``slow`` -> a long pause per delta."""

    def __init__(self) -> None:
        self.lanes = JobLanes(workers=1, max_waiting=64, tokens_per_second=0.0)
        self.reset()

    def reset(self) -> None:
        self.requests: list[GenerateRequest] = []
        self.closed: list[str] = []
        self.loaded: list[tuple[str | None, float | str | None]] = []
        self.unloaded: list[str] = []
        self.ready = True
        self.script: Callable[[GenerateRequest], list[str]] = default_script
        self.finish_reason = "stop"

    def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        self.requests.append(request)
        return self._generate(request)

    async def _generate(self, request: GenerateRequest) -> AsyncIterator[GenerateOutput]:
        model = request.model or "smollm2:135m"
        if model == "missing":
            raise ModelNotFoundError("model 'missing' not found", param="model")
        if model == "too-long":
            raise ContextLengthExceededError(
                "prompt is 5000 tokens but the context window is 4096 tokens", param="messages"
            )
        if model == "busy":
            raise QueueFullError("the queue is full", retry_after=2.0)
        pieces = self.script(request)
        want_logprobs = request.sampling.logprobs
        try:
            for index, piece in enumerate(pieces):
                if model == "slow":
                    await asyncio.sleep(0.5)
                if model == "midfail" and index == 1:
                    raise RequestTimeoutError("the request ran past its deadline")
                last = index == len(pieces) - 1
                tokens = []
                if want_logprobs is not None:
                    top = ((piece, -0.25), ("other", -1.5))[:want_logprobs]
                    tokens = [
                        TokenInfo(token_id=index, text=piece, logprob=-0.25, top_logprobs=top)
                    ]
                yield GenerateOutput(
                    request_id=request.request_id,
                    model=model,
                    text=piece,
                    tokens=tokens,
                    finished=last,
                    finish_reason=self.finish_reason if last else None,
                    prompt_tokens=7,
                    completion_tokens=index + 1,
                    prompt_seconds=0.01,
                    generation_seconds=0.02,
                    load_seconds=0.003,
                )
                await asyncio.sleep(0)
        finally:
            self.closed.append(request.request_id)

    async def abort(self, request_id: str) -> None:
        self.closed.append(request_id)

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        if model == "missing":
            raise ModelNotFoundError("model 'missing' not found", param="model")
        vectors = [[float(len(t)), 1.0, 0.5, -0.25] for t in texts]
        return EmbedResult(
            model=model or "all-minilm:l6-v2", vectors=vectors, prompt_tokens=len(texts) * 3
        )

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        return [ord(c) for c in text]

    async def count_prompt(self, request: GenerateRequest) -> PromptCount:
        """One token per word of the messages, plus 3 per message; a 4096-token window."""
        if request.model == "missing":
            raise ModelNotFoundError("model 'missing' not found", param="model")
        messages = request.messages or []
        words = sum(3 + len(str(m.get("content") or "").split()) for m in messages)
        return PromptCount(request.model or "smollm2:135m", words, 4096)

    async def run_job(self, request: JobRequest[T]) -> T:
        return await self.lanes.run(request)

    async def load(self, model: str | None, keep_alive: float | str | None = "") -> None:
        if model == "missing":
            raise ModelNotFoundError("model 'missing' not found", param="model")
        self.loaded.append((model, keep_alive))

    async def unload(self, model: str) -> bool:
        self.unloaded.append(model)
        return True

    def resident_models(self) -> list[ResidentModel]:
        return [
            ResidentModel(
                name="smollm2:135m",
                digest="sha256:abc",
                backend="llama.cpp",
                processor="100% CPU",
                size_bytes=1234,
                context_length=4096,
                expires_at=1_900_000_000.0,
                running=0,
                waiting=0,
            )
        ]

    def is_ready(self) -> bool:
        return self.ready

    async def close(self) -> None:
        return None
