"""Chat completions: map the request onto kernel requests, and kernel deltas onto responses.

`build_generate_requests` is the whole mapping (one `GenerateRequest` per choice, ``n`` of
them, each with only the sampling fields the caller set). `ChatCompletionService` submits
them concurrently, waits for every first delta (so kernel refusals become HTTP errors), then
either collects a `ChatCompletion` or streams ``chat.completion.chunk`` server-sent events.
Tool calls are parsed per `llmasos.kernel.structured`; under ``auto`` plain text streams as
soon as its first character shows it is not a call. Under ``auto``, a reply made only of
calls whose results the conversation already holds is not returned as calls: the choice is
generated again, constrained to a text answer, and the repeated calls ride along in the
choice's ``repeated_tool_calls`` so the caller sees what the model proposed (a small model
otherwise loops on the same call; docs/design/mcp.md, *Finishing a tool round trip*).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from llmasos.errors import LLMasOSError, UnsupportedError
from llmasos.kernel.interface import EngineClientInterface, GenerateOutput, GenerateRequest
from llmasos.kernel.media import image_part
from llmasos.kernel.structured import (
    ToolCall,
    ToolPlan,
    answered_calls,
    looks_like_tool_call,
    parse_tool_output,
    plan_tools,
    repeats_answered_calls,
    structured_from_response_format,
    text_answer_plan,
)
from llmasos.knowledge.citations import Citation, annotate
from llmasos.server.context import report_finals
from llmasos.server.messages import check_messages
from llmasos.server.openai.chat.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageOut,
    ChatMessageParam,
    FunctionCall,
    ImagePart,
    NamedToolChoice,
    ToolCallOut,
)
from llmasos.server.openai.common import (
    chat_logprob_entries,
    choice_requests,
    finish_reason,
    shared_sampling,
    stopped_by_field,
    usage_of,
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

PARAM_NAMES = {"max_tokens": "max_tokens", "logprobs": "top_logprobs", "stop": "stop"}


def kernel_messages(messages: list[ChatMessageParam]) -> list[dict[str, Any]]:
    """OpenAI messages as the kernel's chat template sees them: text content, dict arguments.
    A message with images for a model that sees them (`llmasos.server.vision` put their
    bytes in its parts) keeps a list of text and image parts (`llmasos.kernel.media`)."""
    result: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        content: Any = message.content
        if isinstance(content, list):
            texts: list[str] = []
            parts: list[dict[str, Any]] = []
            for part in content:
                if isinstance(part, ImagePart) and part.data is not None:
                    parts.append(image_part(part.data))
                    continue
                if part.type != "text":
                    raise UnsupportedError(
                        f"messages[{index}]: content parts of type {part.type!r} are not "
                        "supported (text only)",
                        param=f"messages[{index}].content",
                    )
                texts.append(getattr(part, "text", ""))
                parts.append({"type": "text", "text": getattr(part, "text", "")})
            content = parts if len(parts) > len(texts) else "\n".join(texts)
        role = "system" if message.role == "developer" else message.role
        item: dict[str, Any] = {"role": role, "content": content or ""}
        if message.name:
            item["name"] = message.name
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id or f"call_{index}_{n}",
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments_dict(call.function.arguments),
                    },
                }
                for n, call in enumerate(message.tool_calls)
            ]
        result.append(item)
    return result


def _arguments_dict(arguments: str | dict[str, Any]) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        return json.loads(arguments)
    except json.JSONDecodeError:
        return arguments


def tool_plan_of(body: ChatCompletionRequest) -> ToolPlan:
    tools = [t.model_dump(exclude_none=True) for t in body.tools] if body.tools else None
    choice = body.tool_choice
    choice_value: Any = choice.model_dump() if isinstance(choice, NamedToolChoice) else choice
    return plan_tools(tools, choice_value)


def build_generate_requests(
    body: ChatCompletionRequest, plan: ToolPlan, request_id: str
) -> list[GenerateRequest]:
    """One kernel request per choice; only fields the caller gave become explicit."""
    structured = plan.structured if plan.active else None
    if structured is None and body.response_format is not None:
        structured = structured_from_response_format(
            body.response_format.model_dump(by_alias=True, exclude_none=True)
        )
    given: dict[str, Any] = {
        **shared_sampling(body),
        "max_tokens": body.max_completion_tokens or body.max_tokens,
        "logprobs": (body.top_logprobs or 0) if body.logprobs else None,
        "structured": structured,
        "ignore_eos": body.ignore_eos,
    }
    check_messages([m.model_dump() for m in body.messages])
    sampling, explicit = build_sampling(given, param_names=PARAM_NAMES)
    messages = kernel_messages(body.messages)
    tools = (
        [t.model_dump(exclude_none=True) for t in body.tools]
        if plan.active and body.tools
        else None
    )
    contents = [{"messages": messages, "tools": tools}]
    return choice_requests(body, contents, sampling, explicit, request_id)


def _tool_calls_out(calls: list[ToolCall]) -> list[ToolCallOut]:
    return [
        ToolCallOut(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments_json))
        for c in calls
    ]


@dataclass
class _ChoiceStream:
    """Per-choice streaming state: what was sent, what is held back for tool parsing."""

    index: int
    plan: ToolPlan
    text: str = ""
    held: str = ""
    held_logprobs: list[dict[str, Any]] = field(default_factory=list)
    streaming_text: bool = False

    def hold_back(self) -> bool:
        if not self.plan.active or self.streaming_text:
            return False
        if self.plan.mode == "required":
            return True
        decided = looks_like_tool_call(self.text)
        if decided is False:
            self.streaming_text = True
            return False
        return True


class ChatCompletionService:
    def __init__(self, engine: EngineClientInterface) -> None:
        self.engine = engine

    async def start(
        self, body: ChatCompletionRequest, request_id: str
    ) -> tuple[ToolPlan, list[OutputStream]]:
        plan = tool_plan_of(body)
        requests = build_generate_requests(body, plan, request_id)
        return plan, await start_streams(self.engine, requests)

    async def complete(
        self, body: ChatCompletionRequest, plan: ToolPlan, streams: list[OutputStream]
    ) -> ChatCompletion:
        finals: list[GenerateOutput] = []
        choices: list[ChatChoice] = []
        model = ""
        answered = self._answered(body, plan)
        for index, stream in enumerate(streams):
            outputs = await collect(stream)
            text = "".join(o.text for o in outputs)
            content, calls = parse_tool_output(text, plan)
            repeated: list[ToolCall] = []
            if repeats_answered_calls(calls, plan, answered):
                finals.append(outputs[-1])
                repeated, calls = calls, []
                outputs = await collect(await self._text_answer(body, plan))
                content = "".join(o.text for o in outputs)
            final = outputs[-1]
            finals.append(final)
            model = model or final.model
            logprobs = None
            if body.logprobs:
                logprobs = {"content": chat_logprob_entries([t for o in outputs for t in o.tokens])}
            choices.append(
                ChatChoice(
                    index=index,
                    message=ChatMessageOut(
                        content=content, tool_calls=_tool_calls_out(calls) or None
                    ),
                    finish_reason="tool_calls" if calls else finish_reason(final),
                    logprobs=logprobs,
                    stopped_by=final.stopped_by,
                    repeated_tool_calls=_tool_calls_out(repeated) or None,
                )
            )
        report_finals(finals)
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=model or body.model or "",
            choices=choices,
            usage=usage_of(finals),
        )

    async def stream(
        self,
        body: ChatCompletionRequest,
        plan: ToolPlan,
        streams: list[OutputStream],
        *,
        extra_fields: dict[str, Any] | None = None,
        citations: list[Citation] | None = None,
    ) -> AsyncIterator[str]:
        """Chunks as server-sent events; ``extra_fields`` (``memory_ids``, ``image_input``)
        ride on every chunk, next to ``model``; with ``citations`` every chunk carries them
        and an answer that cited none gets its sources line as a last content delta."""
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        model = streams[0].first.model or body.model or ""
        states = [_ChoiceStream(index=i, plan=plan) for i in range(len(streams))]
        finals: list[GenerateOutput] = []

        head: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        head.update(extra_fields or {})
        if citations is not None:
            head["citations"] = [c.to_dict() for c in citations]
        chunk = functools.partial(chunk_event, head)

        answered = self._answered(body, plan)
        for state in states:
            delta = {"role": "assistant", "content": ""}
            yield chunk([{"index": state.index, "delta": delta, "finish_reason": None}])
        try:
            async for index, output in merge_streams(streams):
                state = states[index]
                state.text += output.text
                entries = chat_logprob_entries(output.tokens) if body.logprobs else []
                if state.hold_back():
                    state.held += output.text
                    state.held_logprobs.extend(entries)
                else:
                    text, state.held = state.held + output.text, ""
                    entries, state.held_logprobs = state.held_logprobs + entries, []
                    if text or entries:
                        choice: dict[str, Any] = {
                            "index": index,
                            "delta": {"content": text},
                            "finish_reason": None,
                        }
                        if body.logprobs:
                            choice["logprobs"] = {"content": entries}
                        yield chunk([choice])
                if output.finished:
                    finals.append(output)
                    repeated = self._held_repeats(state, answered)
                    if repeated:
                        answer = await self._text_answer(body, plan)
                        async for part in answer:
                            if part.text:
                                delta = {"content": part.text}
                                yield chunk(
                                    [{"index": index, "delta": delta, "finish_reason": None}]
                                )
                            output = part
                        finals.append(output)
                        state.held, state.held_logprobs = "", []
                        final = self._final_choice(state, output)
                        final["repeated_tool_calls"] = [c.model_dump() for c in repeated]
                        yield chunk([final])
                        continue
                    if citations and not state.held:
                        tail = annotate(state.text, citations)[0][len(state.text) :]
                        if tail:
                            delta = {"content": tail}
                            yield chunk([{"index": index, "delta": delta, "finish_reason": None}])
                    yield chunk([self._final_choice(state, output)])
        except LLMasOSError as error:
            yield sse_event(error.to_openai())
            yield sse_event("[DONE]")
            return
        finally:
            report_finals(finals)
        if body.stream_options and body.stream_options.include_usage:
            yield chunk([], usage_of(finals).model_dump())
        yield sse_event("[DONE]")

    @staticmethod
    def _answered(body: ChatCompletionRequest, plan: ToolPlan) -> set[tuple[str, str]]:
        if plan.mode != "auto":
            return set()
        return answered_calls(kernel_messages(body.messages))

    @staticmethod
    def _held_repeats(state: _ChoiceStream, answered: set[tuple[str, str]]) -> list[ToolCallOut]:
        """The held-back calls of a finished choice, if all of them repeat answered ones."""
        if not state.held or not answered:
            return []
        _content, calls = parse_tool_output(state.text, state.plan)
        if not repeats_answered_calls(calls, state.plan, answered):
            return []
        return _tool_calls_out(calls)

    async def _text_answer(self, body: ChatCompletionRequest, plan: ToolPlan) -> OutputStream:
        """One more generation of a choice, with the same prompt, constrained to text."""
        single = body.model_copy(update={"n": 1})
        request_id = f"chatcmpl-answer-{uuid.uuid4().hex[:12]}"
        requests = build_generate_requests(single, text_answer_plan(plan), request_id)
        return (await start_streams(self.engine, requests))[0]

    def _final_choice(self, state: _ChoiceStream, output: GenerateOutput) -> dict[str, Any]:
        delta: dict[str, Any] = {}
        reason = finish_reason(output)
        if state.held:
            content, calls = parse_tool_output(state.text, state.plan)
            if calls:
                reason = "tool_calls"
                delta["tool_calls"] = [
                    {"index": n, **call.model_dump()}
                    for n, call in enumerate(_tool_calls_out(calls))
                ]
            else:
                delta["content"] = content or ""
            state.held = ""
        choice: dict[str, Any] = {
            "index": state.index,
            "delta": delta,
            "finish_reason": reason,
            **stopped_by_field(output),
        }
        if state.held_logprobs:
            choice["logprobs"] = {"content": state.held_logprobs}
        return choice
