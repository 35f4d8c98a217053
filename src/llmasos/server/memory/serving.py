"""Memory over HTTP: whose memory a request touches, and recall for chat completions.

The owner is the authenticated principal's user (with authentication off, the machine's
owner). Apps reach memory only through a key with the ``memory`` scope (the manifest
permission ``memory``) and only their own user's. `MemoryService.recall` is what chat
completions call: when memory is on for the request (``metadata.memory`` in the body, else
the owner's setting), the most relevant items are put into the prompt as a system message
that names their ids, and those ids come back in the reply's ``memory_ids``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from llmasos.errors import InvalidRequestError, PermissionDeniedError
from llmasos.memory.memories import (
    MemoryItem,
    MemoryOwner,
    MemoryStore,
    NewMemory,
    check_kind,
    check_metadata,
)
from llmasos.memory.recall import ConversationIndex
from llmasos.memory.recommend import Candidate, Recommender
from llmasos.retrieval.interface import SearchFilters, check_metadata_filters
from llmasos.server.context import principal_var, report_usage, tenant_for
from llmasos.server.memory.protocol import (
    ExtractionUsage,
    MemoryAddResponse,
    MemoryCreateRequest,
    MemoryList,
    MemoryOut,
    MemorySearchRequest,
    MemoryUpdateRequest,
    RecommendationList,
    RecommendationOut,
)

RECALL_K = 5
RECALL_MIN_SIMILARITY = 0.35
TRUE_WORDS = frozenset({"true", "on", "1", "yes"})
FALSE_WORDS = frozenset({"false", "off", "0", "no"})


def current_owner() -> MemoryOwner:
    principal = principal_var.get()
    return MemoryOwner.for_user(principal.user_id if principal is not None else None)


def may_use_memory() -> bool:
    principal = principal_var.get()
    return principal is None or principal.allows_scope("memory")


def memory_out(item: MemoryItem, status: Literal["created", "existing"] | None = None) -> MemoryOut:
    return MemoryOut(**item.to_dict(), status=status)


def memory_switch(metadata: dict[str, Any] | None) -> bool | None:
    """The request's ``metadata.memory`` as a switch; None when it does not say."""
    if not metadata or "memory" not in metadata:
        return None
    value = metadata["memory"]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise InvalidRequestError('metadata.memory: use "true" or "false"', param="metadata.memory")


def recall_message(items: Sequence[MemoryItem]) -> str:
    lines = [f"- [{item.id}] {item.text}" for item in items]
    return (
        "What you remember about the user (memory ids in brackets); use it when it is "
        "relevant, and do not mention it otherwise:\n" + "\n".join(lines)
    )


class MemoryService:
    def __init__(self, store: MemoryStore, conversations: ConversationIndex | None = None) -> None:
        self.store = store
        self.recommender = Recommender(store, conversations)

    async def add(self, body: MemoryCreateRequest) -> MemoryAddResponse:
        owner = current_owner()
        if (body.text is None) == (body.messages is None):
            raise InvalidRequestError("give exactly one of text or messages", param="text")
        if body.text is not None:
            item = NewMemory(
                body.text, body.kind, body.source, body.source_ref, check_metadata(body.metadata)
            )
            result = (await self.store.add_many(owner, [item]))[0]
            return MemoryAddResponse(
                data=[memory_out(result.item, "created" if result.created else "existing")]
            )
        check_metadata(body.metadata)
        messages = [m.model_dump() for m in body.messages or []]
        extraction = await self.store.extract(
            owner,
            messages,
            model=body.model,
            tenant=tenant_for(None),
            source_ref=body.source_ref,
            metadata=body.metadata,
        )
        report_usage(extraction.model, extraction.prompt_tokens, extraction.completion_tokens)
        return MemoryAddResponse(
            data=[
                memory_out(r.item, "created" if r.created else "existing")
                for r in extraction.results
            ],
            model=extraction.model,
            usage=ExtractionUsage(
                prompt_tokens=extraction.prompt_tokens,
                completion_tokens=extraction.completion_tokens,
                total_tokens=extraction.prompt_tokens + extraction.completion_tokens,
            ),
        )

    async def list_items(
        self, kind: str | None, metadata: dict[str, Any], limit: int, after: str | None
    ) -> MemoryList:
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("limit: must be between 1 and 1000", param="limit")
        check_metadata_filters(metadata, "metadata")
        items = await asyncio.to_thread(
            self.store.list_items,
            current_owner(),
            kind=kind,
            metadata=metadata,
            limit=limit + 1,
            after=after,
        )
        return MemoryList(data=[memory_out(i) for i in items[:limit]], has_more=len(items) > limit)

    async def search(self, body: MemorySearchRequest) -> MemoryList:
        if body.kind is not None:
            check_kind(body.kind)
        filters = SearchFilters(
            kind=body.kind, since=body.since, until=body.until, metadata=body.filters
        )
        items = await self.store.search(
            current_owner(), body.query, k=body.k, filters=filters, mode=body.mode
        )
        return MemoryList(data=[memory_out(i) for i in items])

    async def get(self, memory: str) -> MemoryOut:
        return memory_out(await asyncio.to_thread(self.store.get, current_owner(), memory))

    async def update(self, memory: str, body: MemoryUpdateRequest) -> MemoryOut:
        item = await self.store.update(
            current_owner(), memory, text=body.text, kind=body.kind, metadata=body.metadata
        )
        return memory_out(item)

    async def delete(self, memory: str) -> None:
        await asyncio.to_thread(self.store.delete, current_owner(), memory)

    async def delete_all(self) -> int:
        return await asyncio.to_thread(self.store.delete_all, current_owner())

    async def settings(self) -> bool:
        return await asyncio.to_thread(self.store.chat_enabled, current_owner())

    async def set_settings(self, chat: bool) -> bool:
        await asyncio.to_thread(self.store.set_chat_enabled, current_owner(), chat)
        return chat

    async def recommend(self, candidates: Sequence[Candidate], limit: int) -> RecommendationList:
        if not 1 <= limit <= 50:
            raise InvalidRequestError("limit: must be between 1 and 50", param="limit")
        result = await self.recommender.recommend(current_owner(), candidates, limit=limit)
        return RecommendationList(
            data=[
                RecommendationOut(
                    type=r.type,
                    name=r.name,
                    score=round(r.score, 4),
                    reason=r.reason,
                    detail=r.detail,
                )
                for r in result.items
            ],
            cold_start=result.cold_start,
        )

    # --- chat ------------------------------------------------------------------------------

    async def recall(self, metadata: dict[str, Any] | None, query: str) -> list[MemoryItem]:
        """The memories to put into a chat request's prompt (none when memory is off)."""
        switch = memory_switch(metadata)
        if switch is False or not query.strip():
            return []
        if not may_use_memory():
            if switch:
                raise PermissionDeniedError(
                    "metadata.memory: this key lacks the 'memory' scope", code="missing_scope"
                )
            return []
        owner = current_owner()
        if switch is None and not await asyncio.to_thread(self.store.chat_enabled, owner):
            return []
        return await self.store.search(
            owner, query[-4000:], k=RECALL_K, min_similarity=RECALL_MIN_SIMILARITY
        )
