"""``/v1/responses``: one turn over a stored conversation, a response chain, or nothing.

`ResponseService.start` reads the history (the conversation's items, or the chain of
``previous_response_id``), normalizes the input, fits both into the model's window with
`llmasos.memory.fit_context` (which may compact the oldest turns into a summary, metered to
the caller like any request), and submits the kernel request; the kernel's refusals become
HTTP errors before anything is written. `complete` collects the answer and `stream` sends
OpenAI's Responses events (``response.created`` … ``response.completed``). Either way the
turn's items (the input, a new summary, the output) and, with ``store``, the response are
written in one transaction once the answer is whole, so a failure writes nothing.
Function tools and ``text.format`` reuse the chat endpoint's grammar-constrained paths,
and its repeat rule: under ``tool_choice`` auto, an output made only of function calls whose
results the input already holds is generated again constrained to a text answer, and the
repeated calls ride along in the response's ``repeated_tool_calls``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from llmasos.errors import InvalidRequestError, LLMasOSError, UnsupportedError
from llmasos.kernel.interface import EngineClientInterface, GenerateOutput, GenerateRequest
from llmasos.kernel.structured import (
    ToolCall,
    ToolPlan,
    answered_calls,
    parse_tool_output,
    plan_tools,
    repeats_answered_calls,
    structured_from_response_format,
    text_answer_plan,
)
from llmasos.knowledge.citations import Grounding, annotate, ground, sources_prompt
from llmasos.knowledge.filters import parse_filter
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.memory.compaction import ContextPlan, Recaller, fit_context
from llmasos.memory.conversations import NewItem, StoredItem
from llmasos.memory.items import input_items, item_id, item_text, text_parts
from llmasos.server.context import report_finals, report_usage, tenant_for
from llmasos.server.memory.serving import MemoryService, recall_message
from llmasos.server.openai.conversations.serving import ConversationStoreProvider, current_owner
from llmasos.server.openai.responses.protocol import ResponseCreateRequest
from llmasos.server.sampling import build_sampling
from llmasos.server.streaming import OutputStream, collect, start_stream
from llmasos.storage.ids import new_id

logger = logging.getLogger(__name__)


@dataclass
class Turn:
    """A started turn: the request, its fitted context and the kernel's output stream."""

    body: ResponseCreateRequest
    owner: int | None
    response_id: str
    created_at: int
    plan: ContextPlan
    tools: ToolPlan
    new_items: list[dict[str, Any]]
    stream: OutputStream
    sequence: int = 0
    output_ids: list[str] = field(default_factory=list)
    memory_ids: list[str] = field(default_factory=list)
    search: FileSearch | None = None
    request: GenerateRequest | None = None
    repeated: list[dict[str, Any]] = field(default_factory=list)
    """Function calls the model repeated (results already in the input), asked again."""

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence - 1


def chat_tools(body: ResponseCreateRequest) -> list[dict[str, Any]] | None:
    """Responses-style function tools as chat tools (``{"type", "function": {...}}``)."""
    if not body.tools:
        return None
    tools = []
    for index, tool in enumerate(body.tools):
        if tool.type == "file_search":
            continue
        if tool.type != "function" or not tool.name:
            raise UnsupportedError(
                f"tools[{index}]: only function tools with a name and file_search are supported",
                param=f"tools[{index}]",
            )
        function = {"name": tool.name, "parameters": tool.parameters or {"type": "object"}}
        if tool.description:
            function["description"] = tool.description
        tools.append({"type": "function", "function": function})
    return tools or None


def chat_tool_choice(choice: str | dict[str, Any] | None) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def function_choice(choice: str | dict[str, Any] | None, *, searched: bool) -> Any:
    """The tool choice left for the function tools once ``file_search`` ran (or not).

    ``file_search`` runs before the model, on every turn that has it (unless the choice is
    ``"none"``): ``{"type": "file_search"}`` is then satisfied and leaves the functions
    ``"none"``, and ``"required"`` is satisfied by the search, so functions become ``"auto"``
    (or ``"none"`` when there are none)."""
    if isinstance(choice, dict) and choice.get("type") == "file_search":
        if not searched:
            raise InvalidRequestError(
                "tool_choice names file_search, which is not among the tools",
                param="tool_choice",
            )
        return "none"
    if choice == "required" and searched:
        return None  # auto with function tools, none without
    return chat_tool_choice(choice)


def response_format_of(body: ResponseCreateRequest) -> dict[str, Any] | None:
    fmt = body.text.format if body.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema_ is None:
        raise InvalidRequestError("text.format.schema is required", param="text.format.schema")
    return {
        "type": "json_schema",
        "json_schema": {"name": fmt.name or "output", "schema": fmt.schema_},
    }


def usage_dict(output: GenerateOutput) -> dict[str, Any]:
    return {
        "input_tokens": output.prompt_tokens,
        "input_tokens_details": {"cached_tokens": output.cached_tokens},
        "output_tokens": output.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": output.prompt_tokens + output.completion_tokens,
    }


class ResponseService:
    def __init__(
        self,
        engine: EngineClientInterface,
        stores: ConversationStoreProvider,
        memory: MemoryService | None = None,
        knowledge: KnowledgeBase | None = None,
    ) -> None:
        self.engine = engine
        self.stores = stores
        self.memory = memory
        self.knowledge = knowledge

    # --- the turn --------------------------------------------------------------------------

    async def start(self, body: ResponseCreateRequest, request_id: str) -> Turn:
        owner = current_owner()
        conversation_id = body.conversation_id
        if conversation_id and body.previous_response_id:
            raise InvalidRequestError(
                "give conversation or previous_response_id, not both", param="conversation"
            )
        new_items = input_items(body.input, param="input")
        if not new_items:
            raise InvalidRequestError("input is required", param="input")
        history: list[StoredItem] = []
        if conversation_id:
            history = await self.stores.run(lambda s: s.items(owner, conversation_id))
        elif body.previous_response_id:
            previous = body.previous_response_id
            _, history = await self.stores.run(lambda s: s.response_chain(owner, previous))
        await self.stores.run(lambda s: s.check_items(new_items))
        instructions, memory_ids = await self._recall(body, new_items)
        search = (
            None
            if body.tool_choice == "none"
            else await file_search(self.knowledge, body, new_items)
        )
        if search is not None:
            instructions = "\n\n".join(filter(None, [instructions, search.instructions()]))
        tools = chat_tools(body)
        plan_of_tools = plan_tools(
            tools, function_choice(body.tool_choice, searched=search is not None)
        )
        structured = plan_of_tools.structured if plan_of_tools.active else None
        if structured is None:
            structured = structured_from_response_format(
                response_format_of(body), param="text.format"
            )
        tenant = tenant_for(body.user)
        keep_alive = "" if body.keep_alive is None else body.keep_alive
        active_tools = tools if plan_of_tools.active else None
        plan = await fit_context(
            self.engine,
            model=body.model,
            tenant=tenant,
            history=history,
            new_items=new_items,
            instructions=instructions,
            tools=active_tools,
            max_output_tokens=body.max_output_tokens,
            keep_alive=keep_alive,
            label=conversation_id or body.previous_response_id or "a response",
            recaller=self._recaller(owner, conversation_id),
        )
        if plan.compaction is not None:
            report_usage(
                plan.model, plan.compaction.prompt_tokens, plan.compaction.completion_tokens
            )
        sampling, explicit = build_sampling(
            {
                "temperature": body.temperature,
                "top_p": body.top_p,
                "max_tokens": body.max_output_tokens,
                "structured": structured,
            },
            param_names={"max_tokens": "max_output_tokens"},
        )
        request = GenerateRequest(
            model=body.model,
            messages=plan.messages,
            tools=active_tools,
            sampling=sampling,
            explicit=explicit,
            priority=body.priority,
            tenant=tenant,
            keep_alive=keep_alive,
            request_id=request_id if request_id != "-" else new_id("req"),
        )
        stream = await start_stream(self.engine, request)
        return Turn(
            body=body,
            owner=owner,
            response_id=new_id("resp"),
            created_at=int(time.time()),
            plan=plan,
            tools=plan_of_tools,
            new_items=new_items,
            stream=stream,
            memory_ids=memory_ids,
            search=search,
            request=request,
        )

    async def _recall(
        self, body: ResponseCreateRequest, new_items: list[dict[str, Any]]
    ) -> tuple[str | None, list[str]]:
        """The instructions with the user's recalled memories appended, and their ids (the
        caller's instructions and no ids when memory is off or nothing is relevant)."""
        if self.memory is None:
            return body.instructions, []
        query = "\n".join(
            item_text(item)
            for item in new_items
            if item.get("type") == "message" and item.get("role") == "user"
        )
        items = await self.memory.recall(body.metadata, query)
        if not items:
            return body.instructions, []
        note = recall_message(items)
        instructions = f"{body.instructions}\n\n{note}" if body.instructions else note
        return instructions, [item.id for item in items]

    async def _unless_repeated(
        self, turn: Turn, text: str, final: GenerateOutput
    ) -> tuple[str, GenerateOutput]:
        """The repeat rule: if every call in ``text`` repeats one the input already answered,
        the same prompt once more, constrained to a text answer (its usage added)."""
        if turn.request is None or turn.tools.mode != "auto":
            return text, final
        _content, calls = parse_tool_output(text, turn.tools)
        if not calls or not repeats_answered_calls(
            calls, turn.tools, answered_calls(turn.plan.messages)
        ):
            return text, final
        turn.repeated = [_call_item(call) for call in calls]
        answer_plan = text_answer_plan(turn.tools)
        request = replace(
            turn.request,
            request_id=new_id("req"),
            sampling=replace(turn.request.sampling, structured=answer_plan.structured),
        )
        outputs = await collect(await start_stream(self.engine, request))
        last = outputs[-1]
        combined = replace(
            last,
            prompt_tokens=final.prompt_tokens + last.prompt_tokens,
            completion_tokens=final.completion_tokens + last.completion_tokens,
        )
        return "".join(o.text for o in outputs), combined

    async def complete(self, turn: Turn) -> dict[str, Any]:
        outputs = await collect(turn.stream)
        text, final = await self._unless_repeated(
            turn, "".join(o.text for o in outputs), outputs[-1]
        )
        report_finals([final])
        output = self._output_items(text, turn.tools)
        if turn.search is not None:
            output = turn.search.output(output)
        response = self._response(turn, "completed", output, final)
        await self._save(turn, response)
        return response

    async def stream(self, turn: Turn) -> AsyncIterator[str]:
        """Server-sent events of the Responses API, ending with ``response.completed``."""
        yield self._event(
            turn, "response.created", response=self._response(turn, "in_progress", [], None)
        )
        yield self._event(
            turn, "response.in_progress", response=self._response(turn, "in_progress", [], None)
        )
        final: GenerateOutput | None = None
        text = ""
        streaming_text = not turn.tools.active
        message_id = item_id("message")
        at = 0  # the output index of the message
        if turn.search is not None:
            call = turn.search.call_item()
            yield self._event(
                turn, "response.output_item.added", output_index=0,
                item={**call, "status": "in_progress", "results": None},
            )  # fmt: skip
            for phase in ("in_progress", "searching", "completed"):
                yield self._event(
                    turn, f"response.file_search_call.{phase}", output_index=0, item_id=call["id"]
                )
            yield self._event(turn, "response.output_item.done", output_index=0, item=call)
            at = 1
        try:
            if streaming_text:
                yield self._event(
                    turn, "response.output_item.added", output_index=at,
                    item={"id": message_id, "type": "message", "status": "in_progress",
                          "role": "assistant", "content": []},
                )  # fmt: skip
                yield self._event(
                    turn, "response.content_part.added", item_id=message_id, output_index=at,
                    content_index=0, part={"type": "output_text", "text": "", "annotations": []},
                )  # fmt: skip
            async for output in turn.stream:
                text += output.text
                if streaming_text and output.text:
                    yield self._event(
                        turn, "response.output_text.delta", item_id=message_id, output_index=at,
                        content_index=0, delta=output.text, logprobs=[],
                    )  # fmt: skip
                if output.finished:
                    final = output
        except LLMasOSError as error:
            yield self._error_event(turn, error)
            return
        assert final is not None
        try:
            text, final = await self._unless_repeated(turn, text, final)
        except LLMasOSError as error:
            yield self._error_event(turn, error)
            return
        report_finals([final])
        items = self._output_items(text, turn.tools, message_id=message_id)
        if turn.search is not None:
            items = turn.search.output(items)
        response = self._response(turn, "completed", items, final)
        try:
            await self._save(turn, response)
        except LLMasOSError as error:
            yield self._error_event(turn, error)
            return
        for index, item in enumerate(items):
            if item["type"] == "file_search_call":
                continue  # sent before the answer
            if streaming_text and item["type"] == "message":
                part = item["content"][0]
                if part["text"] != text:  # the sources line appended to the answer
                    yield self._event(
                        turn, "response.output_text.delta", item_id=item["id"],
                        output_index=index, content_index=0, delta=part["text"][len(text):],
                        logprobs=[],
                    )  # fmt: skip
                for number, annotation in enumerate(part["annotations"]):
                    yield self._event(
                        turn, "response.output_text.annotation.added", item_id=item["id"],
                        output_index=index, content_index=0, annotation_index=number,
                        annotation=annotation,
                    )  # fmt: skip
                yield self._event(
                    turn, "response.output_text.done", item_id=item["id"], output_index=index,
                    content_index=0, text=part["text"], logprobs=[],
                )  # fmt: skip
                yield self._event(
                    turn, "response.content_part.done", item_id=item["id"], output_index=index,
                    content_index=0, part=part,
                )  # fmt: skip
            else:
                empty: dict[str, Any] = (
                    {"arguments": ""} if item["type"] == "function_call" else {"content": []}
                )
                yield self._event(
                    turn, "response.output_item.added", output_index=index,
                    item={**item, "status": "in_progress", **empty},
                )  # fmt: skip
                if item["type"] == "function_call":
                    yield self._event(
                        turn, "response.function_call_arguments.delta", item_id=item["id"],
                        output_index=index, delta=item["arguments"],
                    )  # fmt: skip
                    yield self._event(
                        turn, "response.function_call_arguments.done", item_id=item["id"],
                        output_index=index, name=item["name"], arguments=item["arguments"],
                    )  # fmt: skip
                else:
                    part = item["content"][0]
                    yield self._event(
                        turn, "response.content_part.added", item_id=item["id"],
                        output_index=index, content_index=0,
                        part={"type": "output_text", "text": "", "annotations": []},
                    )  # fmt: skip
                    yield self._event(
                        turn, "response.output_text.delta", item_id=item["id"],
                        output_index=index, content_index=0, delta=part["text"], logprobs=[],
                    )  # fmt: skip
                    yield self._event(
                        turn, "response.output_text.done", item_id=item["id"],
                        output_index=index, content_index=0, text=part["text"], logprobs=[],
                    )  # fmt: skip
                    yield self._event(
                        turn, "response.content_part.done", item_id=item["id"],
                        output_index=index, content_index=0, part=part,
                    )  # fmt: skip
            yield self._event(turn, "response.output_item.done", output_index=index, item=item)
        yield self._event(turn, "response.completed", response=response)

    # --- retrieval -------------------------------------------------------------------------

    async def retrieve(self, response_id: str) -> dict[str, Any]:
        owner = current_owner()
        return await self.stores.run(lambda s: s.get_response(owner, response_id))

    async def delete(self, response_id: str) -> dict[str, Any]:
        owner = current_owner()
        await self.stores.run(lambda s: s.delete_response(owner, response_id))
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(
        self, response_id: str, after: str | None, limit: int, order: str
    ) -> dict[str, Any]:
        owner = current_owner()
        page = await self.stores.run(
            lambda s: s.response_input_items(
                owner,
                response_id,
                after=after,
                limit=limit,
                order="asc" if order == "asc" else "desc",
            )
        )
        return page.to_openai()

    # --- pieces ----------------------------------------------------------------------------

    @staticmethod
    def _output_items(
        text: str, tools: ToolPlan, *, message_id: str | None = None
    ) -> list[dict[str, Any]]:
        content, calls = parse_tool_output(text, tools)
        if calls:
            return [_call_item(call) for call in calls]
        return [
            {
                "id": message_id or item_id("message"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": text_parts("assistant", content or ""),
            }
        ]

    @staticmethod
    def _response(
        turn: Turn, status: str, output: list[dict[str, Any]], final: GenerateOutput | None
    ) -> dict[str, Any]:
        body = turn.body
        incomplete = None
        if final is not None and final.finish_reason == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        fmt = body.text.format if body.text and body.text.format else None
        conversation = {"id": body.conversation_id} if body.conversation_id else None
        return {
            "id": turn.response_id,
            "object": "response",
            "created_at": turn.created_at,
            "status": status,
            "model": turn.plan.model,
            "output": output,
            "usage": usage_dict(final) if final is not None else None,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
            "tool_choice": body.tool_choice or "auto",
            "parallel_tool_calls": True
            if body.parallel_tool_calls is None
            else body.parallel_tool_calls,
            "text": {
                "format": fmt.model_dump(by_alias=True, exclude_none=True)
                if fmt
                else {"type": "text"}
            },
            "previous_response_id": body.previous_response_id,
            "conversation": conversation,
            "store": body.store,
            "metadata": body.metadata or {},
            "compaction": turn.plan.compaction.to_dict() if turn.plan.compaction else None,
            "recalled_items": turn.plan.recalled,
            **({"memory_ids": turn.memory_ids} if turn.memory_ids else {}),
            **({"repeated_tool_calls": turn.repeated} if turn.repeated else {}),
        }

    async def _save(self, turn: Turn, response: dict[str, Any]) -> None:
        body = turn.body
        if not body.store and not body.conversation_id:
            return
        inputs = [NewItem(item) for item in turn.new_items]
        if turn.plan.new_summary is not None:
            inputs.insert(0, turn.plan.new_summary)
        outputs = [
            NewItem(dict(item), id=item["id"])
            for item in response["output"]
            if item["type"] != "file_search_call"  # a search is not a turn of the conversation
        ]
        written = await self.stores.run(
            lambda s: s.save_response(
                turn.owner,
                response,
                inputs=inputs,
                outputs=outputs,
                conversation_id=body.conversation_id,
                previous_response_id=body.previous_response_id,
                store=body.store,
            )
        )
        if body.conversation_id:
            self.stores.index_later(turn.owner, body.conversation_id, written)

    def _recaller(self, owner: int | None, conversation_id: str | None) -> Recaller | None:
        """Recall through the shared index for a stored conversation; a chain of responses
        (``previous_response_id``) is recalled by words alone."""
        index = self.stores.index() if conversation_id else None
        return index.recaller(owner, conversation_id) if index and conversation_id else None

    @staticmethod
    def _event(turn: Turn, kind: str, **data: Any) -> str:
        payload = {"type": kind, "sequence_number": turn.next_sequence(), **data}
        return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def _error_event(self, turn: Turn, error: LLMasOSError) -> str:
        logger.warning("response %s failed: %s", turn.response_id, error)
        return self._event(turn, "error", code=error.code, message=error.message, param=error.param)


@dataclass
class FileSearch:
    """The ``file_search`` tool's search for one turn, and how its result shapes the output."""

    grounding: Grounding
    call_id: str = field(default_factory=lambda: new_id("fs"))

    def instructions(self) -> str:
        if self.grounding.found:
            return sources_prompt(self.grounding.citations)
        return NOTHING_RELEVANT

    def call_item(self) -> dict[str, Any]:
        return {
            "id": self.call_id,
            "type": "file_search_call",
            "status": "completed",
            "queries": [self.grounding.query],
            "results": self.grounding.search_results(),
        }

    def output(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The search call first, then the items with the answer's citations annotated."""
        result = [self.call_item()]
        for item in items:
            if item["type"] == "message" and item["content"]:
                part = dict(item["content"][0])
                part["text"], part["annotations"] = annotate(part["text"], self.grounding.citations)
                item = {**item, "content": [part, *item["content"][1:]]}
            result.append(item)
        return result


NOTHING_RELEVANT = (
    "A search of the user's documents found nothing relevant to this message. If it asks "
    "about their documents, say that you found nothing about it there; do not guess."
)


def last_input_text(items: list[dict[str, Any]]) -> str:
    """The text of the last user message among the new input items."""
    for item in reversed(items):
        if item.get("type") == "message" and item.get("role") == "user":
            return item_text(item)
    return ""


async def file_search(
    knowledge: KnowledgeBase | None, body: ResponseCreateRequest, items: list[dict[str, Any]]
) -> FileSearch | None:
    """Run the request's ``file_search`` tool (if any) on its last user message."""
    tools = [t for t in body.tools or [] if t.type == "file_search"]
    if not tools:
        return None
    if len(tools) > 1:
        raise InvalidRequestError("tools: give file_search once", param="tools")
    tool = tools[0]
    if knowledge is None:
        raise UnsupportedError("tools: this server has no vector stores", param="tools")
    if not tool.vector_store_ids:
        raise InvalidRequestError(
            "tools[].vector_store_ids: name at least one vector store",
            param="tools.vector_store_ids",
        )
    query = last_input_text(items)
    if not query.strip():
        raise InvalidRequestError(
            "input: file_search needs a user message to search for", param="input"
        )
    grounding = await ground(
        knowledge,
        current_owner(),
        tool.vector_store_ids,
        query,
        max_num_results=tool.max_num_results or 10,
        filters=parse_filter(tool.filters, "tools.filters") if tool.filters else None,
    )
    return FileSearch(grounding)


def _call_item(call: ToolCall) -> dict[str, Any]:
    return {
        "id": item_id("function_call"),
        "type": "function_call",
        "status": "completed",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments_json,
    }
