"""Text completions: each prompt (times ``n``) is one raw kernel request, no chat template.

Choices are numbered prompt-major (``prompt_index * n + i``) as OpenAI does. ``echo``
puts the prompt before the completion; ``logprobs`` uses the legacy completions shape
(``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``).
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.kernel.interface import (
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    TokenInfo,
)
from llmasos.server.context import report_finals
from llmasos.server.openai.common import (
    choice_requests,
    finish_reason,
    shared_sampling,
    stopped_by_field,
    usage_of,
)
from llmasos.server.openai.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
)
from llmasos.server.sampling import build_sampling
from llmasos.server.streaming import (
    OutputStream,
    chunk_event,
    collect,
    merge_streams,
    sse_event,
    start_streams,
)


def prompts_of(body: CompletionRequest) -> list[str]:
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts:
        raise InvalidRequestError("prompt must not be an empty list", param="prompt")
    return prompts


def build_generate_requests(body: CompletionRequest, request_id: str) -> list[GenerateRequest]:
    given: dict[str, Any] = {
        **shared_sampling(body),
        "max_tokens": body.max_tokens,
        "logprobs": body.logprobs,
    }
    sampling, explicit = build_sampling(given)
    contents = [{"prompt": prompt, "raw": True} for prompt in prompts_of(body)]
    return choice_requests(body, contents, sampling, explicit, request_id)


def legacy_logprobs(tokens: list[TokenInfo], offset: int) -> dict[str, Any]:
    """Completions' logprobs: parallel lists, with text offsets counted from ``offset``."""
    result: dict[str, Any] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    position = offset
    for token in tokens:
        result["tokens"].append(token.text)
        result["token_logprobs"].append(token.logprob)
        result["top_logprobs"].append(dict(token.top_logprobs))
        result["text_offset"].append(position)
        position += len(token.text)
    return result


class CompletionService:
    def __init__(self, engine: EngineClientInterface) -> None:
        self.engine = engine

    async def start(self, body: CompletionRequest, request_id: str) -> list[OutputStream]:
        return await start_streams(self.engine, build_generate_requests(body, request_id))

    def _prompt(self, body: CompletionRequest, index: int) -> str:
        return prompts_of(body)[index // body.n]

    async def complete(self, body: CompletionRequest, streams: list[OutputStream]) -> Completion:
        choices: list[CompletionChoice] = []
        finals: list[GenerateOutput] = []
        for index, stream in enumerate(streams):
            outputs = await collect(stream)
            finals.append(outputs[-1])
            prefix = self._prompt(body, index) if body.echo else ""
            text = prefix + "".join(o.text for o in outputs)
            logprobs = None
            if body.logprobs is not None:
                logprobs = legacy_logprobs([t for o in outputs for t in o.tokens], len(prefix))
            choices.append(
                CompletionChoice(
                    index=index,
                    text=text,
                    finish_reason=finish_reason(outputs[-1]),
                    logprobs=logprobs,
                    stopped_by=outputs[-1].stopped_by,
                )
            )
        report_finals(finals)
        return Completion(
            id=f"cmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=finals[0].model or body.model or "",
            choices=choices,
            usage=usage_of(finals),
        )

    async def stream(
        self, body: CompletionRequest, streams: list[OutputStream]
    ) -> AsyncIterator[str]:
        completion_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        model = streams[0].first.model or body.model or ""
        offsets = [len(self._prompt(body, i)) if body.echo else 0 for i in range(len(streams))]
        finals: list[GenerateOutput] = []

        head = {
            "id": completion_id,
            "object": "text_completion",
            "created": created,
            "model": model,
        }
        chunk = functools.partial(chunk_event, head)

        if body.echo:
            for index in range(len(streams)):
                yield chunk(
                    [
                        {
                            "index": index,
                            "text": self._prompt(body, index),
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ]
                )
        try:
            async for index, output in merge_streams(streams):
                logprobs = None
                if body.logprobs is not None:
                    logprobs = legacy_logprobs(output.tokens, offsets[index])
                offsets[index] += len(output.text)
                reason = finish_reason(output) if output.finished else None
                if output.text or reason or (logprobs and logprobs["tokens"]):
                    yield chunk(
                        [
                            {
                                "index": index,
                                "text": output.text,
                                "logprobs": logprobs,
                                "finish_reason": reason,
                                **stopped_by_field(output),
                            }
                        ]
                    )
                if output.finished:
                    finals.append(output)
        except LLMasOSError as error:
            yield sse_event(error.to_openai())
            yield sse_event("[DONE]")
            return
        finally:
            report_finals(finals)
        if body.stream_options and body.stream_options.include_usage:
            yield chunk([], usage_of(finals).model_dump())
        yield sse_event("[DONE]")
