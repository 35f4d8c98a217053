"""``memory_search`` and ``memory_add`` as tools a model can call.

`MEMORY_TOOLS` are OpenAI function-tool definitions (pass them as ``tools`` to a chat
completion); `call_memory_tool` runs a call the model made, for one owner, and returns the
JSON text to send back as the ``tool`` message. Arguments are validated here, so a model
that invents a field gets an error message it can read rather than an exception. The agent
runtime builds on these; nothing here knows about HTTP.
"""

from __future__ import annotations

import json
from typing import Any, Final

from llmasos.errors import LLMasOSError
from llmasos.memory.memories import KINDS, MemoryOwner, MemoryStore
from llmasos.retrieval.interface import SearchFilters

MEMORY_SEARCH: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": "memory_search",
        "description": "Search what you remember about the user; returns the best matches.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to look for."},
                "k": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                "kind": {"type": "string", "enum": list(KINDS)},
            },
            "required": ["query"],
        },
    },
}
MEMORY_ADD: Final[dict[str, Any]] = {
    "type": "function",
    "function": {
        "name": "memory_add",
        "description": "Remember a lasting fact about the user (one short sentence).",
        "parameters": {
            "type": "object",
            "properties": {
                "text": {"type": "string", "description": "The fact, in the third person."},
                "kind": {"type": "string", "enum": list(KINDS), "default": "fact"},
            },
            "required": ["text"],
        },
    },
}
MEMORY_TOOLS: Final = (MEMORY_SEARCH, MEMORY_ADD)
TOOL_NAMES: Final = frozenset({"memory_search", "memory_add"})


async def memory_search(
    store: MemoryStore, owner: MemoryOwner, query: str, k: int = 5, kind: str | None = None
) -> dict[str, Any]:
    items = await store.search(
        owner, query, k=max(1, min(int(k), 20)), filters=SearchFilters(kind=kind)
    )
    return {
        "results": [
            {"id": item.id, "text": item.text, "kind": item.kind, "score": item.score}
            for item in items
        ]
    }


async def memory_add(
    store: MemoryStore, owner: MemoryOwner, text: str, kind: str = "fact"
) -> dict[str, Any]:
    result = await store.add(owner, text, kind=kind, source="conversation")
    return {"id": result.item.id, "status": "created" if result.created else "existing"}


async def call_memory_tool(
    store: MemoryStore, owner: MemoryOwner, name: str, arguments: str | dict[str, Any]
) -> str:
    """Run one tool call; the result (or the error) as JSON text for the ``tool`` message."""
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        if name == "memory_search":
            _only(args, {"query", "k", "kind"})
            result = await memory_search(
                store, owner, str(args.get("query", "")), args.get("k", 5), args.get("kind")
            )
        elif name == "memory_add":
            _only(args, {"text", "kind"})
            result = await memory_add(
                store, owner, str(args.get("text", "")), args.get("kind", "fact")
            )
        else:
            raise ValueError(f"unknown tool {name!r}; use one of {', '.join(sorted(TOOL_NAMES))}")
    except (ValueError, TypeError) as error:
        return json.dumps({"error": str(error)})
    except LLMasOSError as error:
        return json.dumps({"error": error.message})
    return json.dumps(result)


def _only(args: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise ValueError(f"unknown argument {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
