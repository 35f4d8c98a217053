"""Ollama generate and chat over the kernel, streamed as NDJSON (or one JSON object).

A request with no prompt (generate) or no messages (chat) only loads the model, or unloads
it when ``keep_alive`` is 0, as Ollama does. ``format`` constrains output; ``tools`` use the
``auto`` tool mode of `llmasos.kernel.structured` and come back as ``message.tool_calls``
with arguments as objects. The final object carries ``done_reason`` and Ollama's timings.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from llmasos.errors import LLMasOSError, UnsupportedError
from llmasos.kernel.interface import (
    EngineClientInterface,
    GenerateOutput,
    GenerateRequest,
    TokenInfo,
)
from llmasos.kernel.media import image_part, text_part
from llmasos.kernel.structured import (
    ToolPlan,
    looks_like_tool_call,
    parse_tool_output,
    plan_tools,
    structured_from_ollama_format,
)
from llmasos.server.context import report_finals, tenant_for
from llmasos.server.messages import check_messages
from llmasos.server.ollama.common import (
    KeepAlive,
    final_fields,
    now_rfc3339,
    sampling_from_options,
)
from llmasos.server.ollama.generate.protocol import ChatBody, ChatMessageBody, GenerateBody
from llmasos.server.streaming import OutputStream, ndjson_line, start_stream


def _reject_images(images: list[str] | None, param: str) -> None:
    if images:
        raise UnsupportedError("images are not supported by LLMasOS models yet", param=param)


def build_generate_request(body: GenerateBody, request_id: str) -> GenerateRequest:
    _reject_images(body.images, "images")
    if body.image_data and body.raw:
        raise UnsupportedError(
            "raw prompts cannot carry images (the chat template places them)", param="raw"
        )
    if body.suffix:
        raise UnsupportedError("suffix (fill-in-the-middle) is not supported", param="suffix")
    if body.template:
        raise UnsupportedError(
            "a per-request template is not supported; create a model with TEMPLATE instead",
            param="template",
        )
    sampling, explicit = sampling_from_options(
        body.options, structured_from_ollama_format(body.format), body.sampling_logprobs()
    )
    images = [image_part(data) for data in body.image_data]
    return GenerateRequest(
        model=body.model,
        prompt=None if images else body.prompt or "",
        messages=[{"role": "user", "content": [*images, text_part(body.prompt or "")]}]
        if images
        else None,
        raw=body.raw,
        system=body.system,
        sampling=sampling,
        explicit=explicit,
        apply_model_defaults=True,
        keep_alive=KeepAlive.value(body.keep_alive),
        request_id=request_id,
        tenant=tenant_for(None),
    )


def kernel_messages(messages: list[ChatMessageBody]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        _reject_images(message.images, f"messages[{index}].images")
        content: Any = message.content or ""
        if message.image_data:  # images go before the text, as Ollama places them
            content = [*(image_part(data) for data in message.image_data), text_part(content)]
        item: dict[str, Any] = {"role": message.role, "content": content}
        if message.tool_name:
            item["name"] = message.tool_name
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": f"call_{index}_{n}",
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for n, call in enumerate(message.tool_calls)
            ]
        result.append(item)
    return result


def build_chat_request(body: ChatBody, request_id: str) -> tuple[GenerateRequest, ToolPlan]:
    structured = structured_from_ollama_format(body.format)
    plan = ToolPlan(mode="none") if structured else plan_tools(body.tools, "auto")
    if plan.active:
        structured = plan.structured
    check_messages([m.model_dump() for m in body.messages or []], "ollama")
    sampling, explicit = sampling_from_options(body.options, structured, body.sampling_logprobs())
    request = GenerateRequest(
        model=body.model,
        messages=kernel_messages(body.messages or []),
        tools=body.tools or None,
        sampling=sampling,
        explicit=explicit,
        apply_model_defaults=True,
        keep_alive=KeepAlive.value(body.keep_alive),
        request_id=request_id,
        tenant=tenant_for(None),
    )
    return request, plan


def logprob_entries(tokens: list[TokenInfo]) -> list[dict[str, Any]]:
    return [
        {
            "token": t.text,
            "logprob": t.logprob,
            "top_logprobs": [{"token": text, "logprob": lp} for text, lp in t.top_logprobs],
        }
        for t in tokens
        if t.logprob is not None
    ]


def ollama_tool_calls(text: str, plan: ToolPlan) -> tuple[str, list[dict[str, Any]]]:
    content, calls = parse_tool_output(text, plan)
    return content or "", [
        {"function": {"name": call.name, "arguments": call.arguments}} for call in calls
    ]


class OllamaGenerateService:
    def __init__(self, engine: EngineClientInterface) -> None:
        self.engine = engine

    async def load_or_unload(self, model: str, keep_alive: float | str | None) -> str:
        """Ollama's empty request: load the model, or unload it when keep_alive is 0."""
        if KeepAlive.unloads(keep_alive):
            await self.engine.unload(model)
            return "unload"
        await self.engine.load(model, KeepAlive.value(keep_alive))
        return "load"

    async def generate_stream(
        self, body: GenerateBody, stream: OutputStream, started: float
    ) -> AsyncIterator[str]:
        model = stream.first.model or body.model
        try:
            async for output in stream:
                line: dict[str, Any] = {
                    "model": model,
                    "created_at": now_rfc3339(),
                    "response": output.text,
                    "done": output.finished,
                }
                if body.logprobs:
                    line["logprobs"] = logprob_entries(output.tokens)
                if output.finished:
                    report_finals([output])
                    line.update(final_fields(output, time.monotonic() - started))
                yield ndjson_line(line)
        except LLMasOSError as error:
            yield ndjson_line({"error": error.message})

    async def generate_once(
        self, body: GenerateBody, stream: OutputStream, started: float
    ) -> dict[str, Any]:
        outputs = [o async for o in stream]
        final = outputs[-1]
        report_finals([final])
        response: dict[str, Any] = {
            "model": final.model or body.model,
            "created_at": now_rfc3339(),
            "response": "".join(o.text for o in outputs),
            "done": True,
            **final_fields(final, time.monotonic() - started),
        }
        if body.logprobs:
            response["logprobs"] = logprob_entries([t for o in outputs for t in o.tokens])
        return response

    async def start_chat(self, body: ChatBody, request_id: str) -> tuple[OutputStream, ToolPlan]:
        request, plan = build_chat_request(body, request_id)
        return await start_stream(self.engine, request), plan

    async def start_generate(self, body: GenerateBody, request_id: str) -> OutputStream:
        return await start_stream(self.engine, build_generate_request(body, request_id))

    def _chat_line(
        self, model: str, content: str, done: bool, tool_calls: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"model": model, "created_at": now_rfc3339(), "message": message, "done": done}

    async def chat_stream(
        self, body: ChatBody, stream: OutputStream, plan: ToolPlan, started: float
    ) -> AsyncIterator[str]:
        model = stream.first.model or body.model
        text = ""
        held = ""
        streaming_text = not plan.active
        final: GenerateOutput | None = None
        try:
            async for output in stream:
                text += output.text
                if not streaming_text and looks_like_tool_call(text) is False:
                    streaming_text = True
                if streaming_text:
                    piece, held = held + output.text, ""
                    if piece or body.logprobs:
                        line = self._chat_line(model, piece, False)
                        if body.logprobs:
                            line["logprobs"] = logprob_entries(output.tokens)
                        yield ndjson_line(line)
                else:
                    held += output.text
                if output.finished:
                    final = output
                    report_finals([output])
        except LLMasOSError as error:
            yield ndjson_line({"error": error.message})
            return
        assert final is not None
        if held:
            content, calls = ollama_tool_calls(text, plan)
            yield ndjson_line(self._chat_line(model, content, False, calls))
        last = self._chat_line(model, "", True)
        last.update(final_fields(final, time.monotonic() - started))
        yield ndjson_line(last)

    async def chat_once(
        self, body: ChatBody, stream: OutputStream, plan: ToolPlan, started: float
    ) -> dict[str, Any]:
        outputs = [o async for o in stream]
        final = outputs[-1]
        report_finals([final])
        content, calls = ollama_tool_calls("".join(o.text for o in outputs), plan)
        response = self._chat_line(final.model or body.model, content, True, calls)
        response.update(final_fields(final, time.monotonic() - started))
        if body.logprobs:
            response["logprobs"] = logprob_entries([t for o in outputs for t in o.tokens])
        return response
