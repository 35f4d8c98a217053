"""``/v1/vector_stores`` (OpenAI's Vector Stores API) and chunk editing (an addition):

stores (create, list, retrieve, modify, delete), their files (add, list, retrieve, update
attributes, remove), ``/file_batches`` (add many files at once, follow, cancel, list
their files), ``/search``, and ``/files/{file_id}/chunks`` +
``/chunks/{chunk_id}`` (GET, PATCH) to read, fix and disable chunks by hand; ``/graph``
(build in the background, status), ``/graph/entities`` and ``/graph/query`` for the
store's knowledge graph.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from llmasos.errors import InvalidRequestError
from llmasos.knowledge.batches import FileBatches
from llmasos.knowledge.filters import parse_filter
from llmasos.knowledge.graphstore import entity_dict
from llmasos.knowledge.stores import (
    RANKERS,
    FileToAdd,
    KnowledgeBase,
    StoreFileInfo,
    parse_chunking,
)
from llmasos.server.openai.common import list_page
from llmasos.server.openai.files.serving import current_user
from llmasos.server.openai.vector_stores.protocol import (
    ChunkUpdateRequest,
    FileBatchCreateRequest,
    GraphQueryRequest,
    VectorStoreCreateRequest,
    VectorStoreFileCreateRequest,
    VectorStoreFileUpdateRequest,
    VectorStoreSearchRequest,
    VectorStoreUpdateRequest,
)


class FilePage:
    """The query of a page of store files: ``limit``, ``after``, ``order`` and ``filter``
    (a status)."""

    def __init__(
        self,
        limit: int = Query(20, ge=1, le=100),
        after: str | None = None,
        order: Literal["asc", "desc"] = "desc",
        filter: str | None = Query(None, description="in_progress, completed, failed, cancelled"),
    ) -> None:
        self.limit, self.after, self.order, self.status = limit, after, order, filter

    async def of(self, lister: Callable[..., list[StoreFileInfo]], *args: Any) -> dict[str, Any]:
        found = await asyncio.to_thread(
            lister,
            *args,
            status=self.status,
            limit=self.limit + 1,
            after=self.after,
            order=self.order,
        )
        return list_page(found, self.limit)


def vector_stores_router(knowledge: KnowledgeBase) -> APIRouter:
    router = APIRouter(tags=["knowledge"])
    kb = knowledge

    @router.post("/v1/vector_stores", summary="Create a vector store")
    async def create_store(body: VectorStoreCreateRequest) -> dict[str, Any]:
        info = await kb.create_store(
            current_user(),
            name=body.name,
            metadata=body.metadata,
            chunking=parse_chunking(body.chunking_strategy),
            file_ids=body.file_ids,
        )
        return info.to_dict()

    @router.get("/v1/vector_stores", summary="List your vector stores")
    async def list_stores(
        limit: int = Query(20, ge=1, le=100),
        after: str | None = None,
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(
            kb.list_stores, current_user(), limit=limit + 1, after=after, order=order
        )
        return list_page(found, limit)

    @router.get("/v1/vector_stores/{store_id}", summary="Retrieve a vector store")
    async def retrieve_store(store_id: str) -> dict[str, Any]:
        return (await asyncio.to_thread(kb.get_store, current_user(), store_id)).to_dict()

    @router.post("/v1/vector_stores/{store_id}", summary="Modify a vector store")
    async def modify_store(store_id: str, body: VectorStoreUpdateRequest) -> dict[str, Any]:
        info = await asyncio.to_thread(
            kb.modify_store, current_user(), store_id, name=body.name, metadata=body.metadata
        )
        return info.to_dict()

    @router.delete("/v1/vector_stores/{store_id}", summary="Delete a vector store")
    async def delete_store(store_id: str) -> dict[str, Any]:
        await asyncio.to_thread(kb.delete_store, current_user(), store_id)
        return {"id": store_id, "object": "vector_store.deleted", "deleted": True}

    @router.post("/v1/vector_stores/{store_id}/files", summary="Add a file (or re-index it)")
    async def add_file(store_id: str, body: VectorStoreFileCreateRequest) -> dict[str, Any]:
        chunking = parse_chunking(body.chunking_strategy) if body.chunking_strategy else None
        info = await kb.add_file(
            current_user(), store_id, body.file_id, attributes=body.attributes, chunking=chunking
        )
        return info.to_dict()

    @router.get("/v1/vector_stores/{store_id}/files", summary="List a store's files")
    async def list_files(store_id: str, page: Annotated[FilePage, Depends()]) -> dict[str, Any]:
        return await page.of(kb.list_files, current_user(), store_id)

    @router.get("/v1/vector_stores/{store_id}/files/{file_id}", summary="A file's status")
    async def retrieve_file(store_id: str, file_id: str) -> dict[str, Any]:
        return (await asyncio.to_thread(kb.get_file, current_user(), store_id, file_id)).to_dict()

    @router.post("/v1/vector_stores/{store_id}/files/{file_id}", summary="Update its attributes")
    async def update_file(
        store_id: str, file_id: str, body: VectorStoreFileUpdateRequest
    ) -> dict[str, Any]:
        info = await asyncio.to_thread(
            kb.update_file_attributes, current_user(), store_id, file_id, body.attributes
        )
        return info.to_dict()

    @router.delete("/v1/vector_stores/{store_id}/files/{file_id}", summary="Remove a file")
    async def remove_file(store_id: str, file_id: str) -> dict[str, Any]:
        await asyncio.to_thread(kb.remove_file, current_user(), store_id, file_id)
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    batches = FileBatches(knowledge)

    @router.post("/v1/vector_stores/{store_id}/file_batches", summary="Add many files at once")
    async def create_batch(store_id: str, body: FileBatchCreateRequest) -> dict[str, Any]:
        if body.files is not None and body.file_ids is not None:
            raise InvalidRequestError("give file_ids or files, not both", param="files")
        if body.files is not None:
            files = [
                FileToAdd(
                    f.file_id,
                    f.attributes,
                    parse_chunking(f.chunking_strategy) if f.chunking_strategy else None,
                )
                for f in body.files
            ]
        else:
            chunking = parse_chunking(body.chunking_strategy) if body.chunking_strategy else None
            files = [FileToAdd(i, body.attributes, chunking) for i in body.file_ids or []]
        info = await batches.create(current_user(), store_id, files)
        return info.to_dict()

    @router.get("/v1/vector_stores/{store_id}/file_batches/{batch_id}", summary="A batch's status")
    async def retrieve_batch(store_id: str, batch_id: str) -> dict[str, Any]:
        info = await asyncio.to_thread(batches.get, current_user(), store_id, batch_id)
        return info.to_dict()

    @router.post(
        "/v1/vector_stores/{store_id}/file_batches/{batch_id}/cancel", summary="Cancel a batch"
    )
    async def cancel_batch(store_id: str, batch_id: str) -> dict[str, Any]:
        info = await asyncio.to_thread(batches.cancel, current_user(), store_id, batch_id)
        return info.to_dict()

    @router.get(
        "/v1/vector_stores/{store_id}/file_batches/{batch_id}/files", summary="A batch's files"
    )
    async def list_batch_files(
        store_id: str, batch_id: str, page: Annotated[FilePage, Depends()]
    ) -> dict[str, Any]:
        return await page.of(batches.list_files, current_user(), store_id, batch_id)

    @router.get("/v1/vector_stores/{store_id}/files/{file_id}/chunks", summary="A file's chunks")
    async def list_chunks(
        store_id: str,
        file_id: str,
        limit: int = Query(100, ge=1, le=1000),
        after: int = Query(-1, description="Continue after this position."),
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(
            kb.list_chunks, current_user(), store_id, file_id, limit=limit + 1, after=after
        )
        return list_page(found, limit)

    @router.get("/v1/vector_stores/{store_id}/chunks/{chunk_id}", summary="One chunk")
    async def retrieve_chunk(store_id: str, chunk_id: str) -> dict[str, Any]:
        return (await asyncio.to_thread(kb.get_chunk, current_user(), store_id, chunk_id)).to_dict()

    @router.patch("/v1/vector_stores/{store_id}/chunks/{chunk_id}", summary="Edit a chunk")
    async def update_chunk(
        store_id: str, chunk_id: str, body: ChunkUpdateRequest
    ) -> dict[str, Any]:
        info = await kb.update_chunk(
            current_user(), store_id, chunk_id, text=body.text, disabled=body.disabled
        )
        return info.to_dict()

    @router.post("/v1/vector_stores/{store_id}/search", summary="Search a vector store")
    async def search(store_id: str, body: VectorStoreSearchRequest) -> dict[str, Any]:
        query = body.query if isinstance(body.query, str) else " ".join(body.query)
        options = body.ranking_options
        ranker = options.ranker if options is not None else "auto"
        if ranker not in RANKERS:
            raise InvalidRequestError(
                f"ranking_options.ranker: {ranker[:40]!r} is not one of {', '.join(RANKERS)}",
                param="ranking_options.ranker",
            )
        result = await kb.search(
            current_user(),
            [store_id],
            query,
            max_num_results=body.max_num_results,
            filters=parse_filter(body.filters) if body.filters is not None else None,
            score_threshold=options.score_threshold if options is not None else 0.0,
            mode=RANKERS[ranker],  # type: ignore[arg-type]
            graph=options.graph if options is not None else False,
        )
        store = result.stores[0]
        return {
            "object": "vector_store.search_results.page",
            "search_query": [query],
            "data": [r.to_dict() for r in result.results],
            "has_more": False,
            "next_page": None,
            "vector_store_status": store.status,
            "file_counts": store.file_counts.to_dict(),
        }

    @router.post("/v1/vector_stores/{store_id}/graph", summary="Build the knowledge graph")
    async def build_graph(store_id: str) -> dict[str, Any]:
        return (await kb.graph.start_build(current_user(), store_id)).to_dict()

    @router.get("/v1/vector_stores/{store_id}/graph", summary="The graph and its build")
    async def graph_status(store_id: str) -> dict[str, Any]:
        return (await asyncio.to_thread(kb.graph.status, current_user(), store_id)).to_dict()

    @router.get("/v1/vector_stores/{store_id}/graph/entities", summary="The graph's entities")
    async def graph_entities(
        store_id: str, limit: int = Query(100, ge=1, le=1000)
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(kb.graph.entities, current_user(), store_id, limit)
        return {"object": "list", "data": [entity_dict(e) for e in found]}

    @router.post("/v1/vector_stores/{store_id}/graph/query", summary="Ask the knowledge graph")
    async def query_graph(store_id: str, body: GraphQueryRequest) -> dict[str, Any]:
        return await graph_answer(store_id, body)

    @router.get("/v1/vector_stores/{store_id}/graph/query", summary="Ask the knowledge graph")
    async def query_graph_get(
        store_id: str,
        query: str,
        mode: str = "auto",
        hops: int = 1,
        max_hops: int = 4,
        limit: int = 20,
    ) -> dict[str, Any]:
        body = GraphQueryRequest(query=query, mode=mode, hops=hops, max_hops=max_hops, limit=limit)
        return await graph_answer(store_id, body)

    async def graph_answer(store_id: str, body: GraphQueryRequest) -> dict[str, Any]:
        answer = await kb.graph.query(
            current_user(),
            store_id,
            body.query,
            mode=body.mode,  # type: ignore[arg-type]
            hops=body.hops,
            max_hops=body.max_hops,
            limit=body.limit,
        )
        return answer.to_dict()

    return router
