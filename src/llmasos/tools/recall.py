"""The user's own data as tools: ``memory_search``/``memory_add`` (long-term memory),
``file_search`` (their vector stores, with citations) and ``fs_find`` (their file space).

Each reads the OS part from `ToolSystem`; where this process runs none, the tool says so.
``memory_add`` changes what the assistant remembers about the user, so it asks for approval
like any side effect (a poisoned web page must not plant a memory).
"""

from __future__ import annotations

from typing import Any, TypeVar

from llmasos.access.principal import FILES_SCOPE_PREFIX
from llmasos.knowledge.citations import citations_of
from llmasos.knowledge.fstypes import FileOwner
from llmasos.memory.memories import MemoryOwner
from llmasos.memory.tools import MEMORY_ADD, MEMORY_SEARCH, memory_add, memory_search
from llmasos.tools.interface import Tool, ToolContext, ToolError, ToolResult, ToolSpec

T = TypeVar("T")


def _needs(part: T | None, what: str) -> T:
    if part is None:
        raise ToolError(f"{what} is not available in this process", code="unavailable")
    return part


def _spec_of(function: dict[str, Any], **kwargs: Any) -> ToolSpec:
    body = function["function"]
    return ToolSpec(
        name=body["name"], description=body["description"], parameters=body["parameters"], **kwargs
    )


class MemorySearch(Tool):
    spec = _spec_of(MEMORY_SEARCH, permission="memory", group="memory")

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        store = _needs(context.system.memory, "long-term memory")
        owner = MemoryOwner.for_user(context.principal.user_id)
        return ToolResult(
            await memory_search(
                store, owner, arguments["query"], arguments.get("k", 5), arguments.get("kind")
            )
        )


class MemoryAdd(Tool):
    spec = _spec_of(MEMORY_ADD, permission="memory", group="memory", side_effect=True)

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        store = _needs(context.system.memory, "long-term memory")
        owner = MemoryOwner.for_user(context.principal.user_id)
        result = await memory_add(store, owner, arguments["text"], arguments.get("kind", "fact"))
        return ToolResult(result, effects=(f"remembered memory {result['id']}",))

    async def describe(self, arguments: dict[str, Any], context: ToolContext) -> str:
        return f"remember about you: {arguments['text']!r}"


class FileSearch(Tool):
    spec = ToolSpec(
        name="file_search",
        description="Search the user's knowledge bases (vector stores); returns numbered "
        "passages with the file each comes from, to cite.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "vector_store_ids": {"type": "array", "items": {"type": "string"}},
                "max_num_results": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        permission="knowledge",
        group="knowledge",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        knowledge = _needs(context.system.knowledge, "the knowledge base")
        user = context.principal.user_id
        stores = arguments.get("vector_store_ids") or [
            store.id for store in knowledge.list_stores(user, limit=100)
        ]
        if not stores:
            return ToolResult({"results": [], "note": "the user has no vector stores"})
        page = await knowledge.search(
            user, stores, arguments["query"], max_num_results=arguments.get("max_num_results", 5)
        )
        citations = citations_of(page.results, limit=arguments.get("max_num_results", 5))
        return ToolResult({"results": [c.to_dict() for c in citations]})


class FsFind(Tool):
    spec = ToolSpec(
        name="fs_find",
        description="Find files in the user's file space by name, content or summary.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1},
                "k": {"type": "integer", "minimum": 1, "maximum": 20},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        permission="files",
        group="files",
    )

    async def run(self, arguments: dict[str, Any], context: ToolContext) -> ToolResult:
        files = _needs(context.system.files, "the file space")
        owner = FileOwner.for_user(context.principal.user_id)
        hits = await files.find(owner, arguments["query"], k=arguments.get("k", 10))
        scopes = context.principal.scopes
        if "files" not in scopes:  # a key limited to directories sees only those
            roots = [
                s[len(FILES_SCOPE_PREFIX) :].rstrip("/")
                for s in scopes
                if s.startswith(FILES_SCOPE_PREFIX)
            ]
            hits = [
                h for h in hits if any(h.path == r or h.path.startswith(r + "/") for r in roots)
            ]
        return ToolResult({"results": [hit.to_dict() for hit in hits]})


memory_search_tool = MemorySearch()
memory_add_tool = MemoryAdd()
file_search = FileSearch()
fs_find = FsFind()
