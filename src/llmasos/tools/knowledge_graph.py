"""``kg_search``: agents ask a knowledge base's knowledge graph.

The same answers as ``llmasos kg query`` and ``/v1/vector_stores/{id}/graph/query``:
neighbourhood ("what is connected to X") or path ("how is X related to Y"), every edge with
its citation (file, chunk, quote). Permission ``knowledge``, group ``knowledge``; it reads
only the caller's stores (another user's store is "not found", as on the API). An entity the
graph does not hold is an answer saying so, not an error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llmasos.errors import NotFoundError
from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolResult, ToolSpec


class KnowledgeGraphSearchTool(Tool):
    spec = ToolSpec(
        name="kg_search",
        description=(
            "Ask the knowledge graph of one of the user's knowledge bases: what is connected "
            "to an entity, or how two entities are related. Every relation comes with the "
            "file and chunk that states it."
        ),
        parameters={
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 2000,
                    "description": 'The question, naming the entities ("how is Maria related '
                    'to the Lisbon offsite?").',
                },
                "store": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "description": "The knowledge base: its id (vs_...) or its name.",
                },
                "mode": {"type": "string", "enum": ["auto", "neighbourhood", "path"]},
                "hops": {"type": "integer", "minimum": 1, "maximum": 4},
            },
            "required": ["query", "store"],
            "additionalProperties": False,
        },
        permission="knowledge",
        group="knowledge",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        kb = context.system.knowledge
        if kb is None:
            raise ToolError("knowledge bases are not available in this process")
        user = context.principal.user_id
        try:
            store = await asyncio.to_thread(kb.find_store, user, arguments["store"])
        except NotFoundError:
            raise ToolError(
                f"no knowledge base {arguments['store'][:80]!r}; name one of the user's "
                "knowledge bases by id or name"
            ) from None
        answer = await kb.graph.query(
            user,
            store.id,
            arguments["query"],
            mode=arguments.get("mode", "auto"),
            hops=arguments.get("hops", 1),
        )
        return ToolResult(answer.to_dict())
