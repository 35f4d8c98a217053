"""A store's knowledge graph in the database: builds in the background, questions, graph mode.

`KnowledgeGraph` belongs to a `KnowledgeBase` (``kb.graph``) and uses its ownership rules: a
store another user owns is "not found". Tables (migration ``0011_graph``): ``kg_entities``
(name sealed with the content cipher, a keyed hash of the normalized name for lookup and
de-duplication, type, mention count, name embedding), ``kg_relations`` (subject, sealed
predicate, object, the chunk that states it), ``kg_extractions`` (chunks already read) and
``kg_builds`` (the latest build's status and progress).

A build reads every enabled chunk of the store's completed files that has no extraction
mark, asks the extractor for triples, merges names into existing entities
(`llmasos.knowledge.graph.resolve_names`) and commits each chunk's triples with its mark in
one transaction — after checking the chunk was not edited meanwhile. Deleting a chunk
(re-indexing or removing its file) cascades to its triples and mark; editing or disabling
one drops them in the edit's transaction (`forget_chunks`), so the graph never cites text a
chunk no longer holds, and the next build reads the new text. Files still being indexed are
skipped and counted (``files_in_progress``): the build uses what is indexed. A build holds
the process's claim on its store (`llmasos.storage.claims`): with several servers on one
database, a build started on one while another builds the store returns that build's status,
and a server starting meanwhile does not mark it interrupted.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.knowledge.graph import Edge, Entity, Graph, normalize_name, resolve_names
from llmasos.knowledge.graphextract import GraphExtractorInterface, Triple
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import (
    KB_CHUNK_TEXT_CONTEXT,
    KG_ENTITY_NAME_CONTEXT,
    KG_RELATION_PREDICATE_CONTEXT,
    GraphBuild,
    GraphEntity,
    GraphExtraction,
    GraphRelation,
    KnowledgeChunk,
    KnowledgeFile,
    VectorStoreFile,
)

if TYPE_CHECKING:
    from llmasos.knowledge.stores import KnowledgeBase

logger = logging.getLogger(__name__)

register_encrypted_column(GraphEntity.__table__, "name", context=KG_ENTITY_NAME_CONTEXT)  # type: ignore[arg-type]
register_encrypted_column(
    GraphRelation.__table__,  # type: ignore[arg-type]
    "predicate",
    context=KG_RELATION_PREDICATE_CONTEXT,
)

ENTITY_MATCH_SIMILARITY: Final = 0.5
"""A question names an entity by embedding when no name is in it word for word and the
question's embedding is at least this similar to the entity's name."""
MAX_HOPS: Final = 4
MAX_EDGES: Final = 50
MAX_QUESTION_CHARS: Final = 2000
CLAIM_KIND: Final = "graph_build"
QUOTE_CHARS: Final = 300
GraphMode = Literal["auto", "neighbourhood", "path"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def entity_id(row_id: int) -> str:
    return f"ent_{row_id}"


def entity_dict(entity: Entity) -> dict[str, Any]:
    return {
        "id": entity_id(entity.id),
        "object": "vector_store.graph.entity",
        "name": entity.name,
        "type": entity.type,
        "mentions": entity.mentions,
    }


def forget_chunks(session: Session, chunk_ids: Sequence[int]) -> None:
    """Drop the triples and extraction marks of these chunks (their text changed or left
    the index), in the caller's transaction."""
    ids = list(chunk_ids)
    if ids:
        session.execute(delete(GraphRelation).where(GraphRelation.chunk_id.in_(ids)))
        session.execute(delete(GraphExtraction).where(GraphExtraction.chunk_id.in_(ids)))


@dataclass(frozen=True)
class BuildInfo:
    """A store's graph and its latest build."""

    vector_store_id: str
    status: str
    """``none`` (never built), ``in_progress``, ``completed`` or ``failed``."""
    chunks_total: int = 0
    chunks_done: int = 0
    triples_added: int = 0
    files_in_progress: int = 0
    entities: int = 0
    relations: int = 0
    chunks_extracted: int = 0
    chunks_pending: int = 0
    model: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> int | None:
            return int(value.timestamp()) if value is not None else None

        return {
            "object": "vector_store.graph",
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "progress": {"chunks_total": self.chunks_total, "chunks_done": self.chunks_done},
            "triples_added": self.triples_added,
            "files_in_progress": self.files_in_progress,
            "entities": self.entities,
            "relations": self.relations,
            "chunks_extracted": self.chunks_extracted,
            "chunks_pending": self.chunks_pending,
            "model": self.model,
            "last_error": (
                {"code": "server_error", "message": self.error_message}
                if self.status == "failed"
                else None
            ),
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
        }


@dataclass(frozen=True)
class Citation:
    chunk_id: str
    file_id: str
    filename: str
    quote: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "file_id": self.file_id,
            "filename": self.filename,
            "quote": self.quote,
        }


@dataclass(frozen=True)
class AnswerEdge:
    subject: str
    predicate: str
    object: str
    hop: int
    citation: Citation

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "predicate": self.predicate,
            "object": self.object,
            "hop": self.hop,
            "citation": self.citation.to_dict(),
        }


@dataclass(frozen=True)
class MatchedEntity:
    entity: Entity
    matched_by: str
    """``name`` (the question contains it) or ``embedding``."""
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **entity_dict(self.entity),
            "matched_by": self.matched_by,
            "similarity": round(self.similarity, 4) if self.similarity is not None else None,
        }


@dataclass(frozen=True)
class GraphAnswer:
    query: str
    mode: str
    """``neighbourhood`` or ``path``."""
    found: bool
    message: str
    entities: list[MatchedEntity] = field(default_factory=list)
    edges: list[AnswerEdge] = field(default_factory=list)
    build: BuildInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "vector_store.graph.answer",
            "query": self.query,
            "mode": self.mode,
            "found": self.found,
            "message": self.message,
            "entities": [e.to_dict() for e in self.entities],
            "edges": [e.to_dict() for e in self.edges],
            "graph_status": self.build.status if self.build is not None else "none",
        }


@dataclass
class LoadedGraph:
    """A store's graph as the queries read it, cached until the tables change."""

    signature: tuple[int, ...]
    graph: Graph
    keys: dict[str, int]
    """Normalized name -> entity id (connected entities only)."""
    embeddings: dict[int, np.ndarray]


class KnowledgeGraph:
    """The graphs of every store of one `KnowledgeBase`."""

    def __init__(self, kb: KnowledgeBase, extractor: GraphExtractorInterface) -> None:
        self.kb = kb
        self.extractor = extractor
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cache: dict[str, LoadedGraph] = {}

    # --- status ----------------------------------------------------------------------------

    def status(self, user_id: int | None, store_id: str) -> BuildInfo:
        with self.kb.database.session() as session:
            store = self.kb._store(session, user_id, store_id)
            return self._status(session, store.id)

    def _status(self, session: Session, store_id: str) -> BuildInfo:
        def count(model: Any) -> int:
            return int(
                session.scalar(
                    select(func.count()).select_from(model).where(model.vector_store_id == store_id)
                )
                or 0
            )

        extracted = count(GraphExtraction)
        pending = len(self._pending_chunks(session, store_id))
        row = session.get(GraphBuild, store_id)
        base = {
            "entities": count(GraphEntity),
            "relations": count(GraphRelation),
            "chunks_extracted": extracted,
            "chunks_pending": pending,
        }
        if row is None:
            return BuildInfo(store_id, "none", **base)  # type: ignore[arg-type]
        return BuildInfo(
            store_id,
            row.status,
            chunks_total=row.chunks_total,
            chunks_done=row.chunks_done,
            triples_added=row.triples_added,
            files_in_progress=row.files_in_progress,
            model=row.model,
            error_message=row.error_message,
            started_at=row.started_at,
            finished_at=row.finished_at,
            **base,
        )

    @staticmethod
    def _pending_chunks(session: Session, store_id: str) -> list[int]:
        done = select(GraphExtraction.chunk_id).where(GraphExtraction.vector_store_id == store_id)
        return [
            int(i)
            for i in session.scalars(
                select(KnowledgeChunk.id)
                .join(VectorStoreFile, VectorStoreFile.id == KnowledgeChunk.store_file_id)
                .where(
                    KnowledgeChunk.vector_store_id == store_id,
                    KnowledgeChunk.disabled.is_(False),
                    VectorStoreFile.status == "completed",
                    KnowledgeChunk.id.not_in(done),
                )
                .order_by(KnowledgeChunk.id)
            )
        ]

    # --- builds ----------------------------------------------------------------------------

    async def start_build(self, user_id: int | None, store_id: str) -> BuildInfo:
        """Start reading the store's unread chunks in the background (a build already
        running is returned as it is)."""
        running = self._tasks.get(store_id)
        if running is not None and not running.done():
            return await asyncio.to_thread(self.status, user_id, store_id)
        claims = self.kb.database.claims
        if not await asyncio.to_thread(claims.claim, CLAIM_KIND, store_id):
            return await asyncio.to_thread(self.status, user_id, store_id)  # another server's

        def begin() -> BuildInfo:
            with self.kb.database.session(write=True) as session:
                store = self.kb._store(session, user_id, store_id)
                indexing = int(
                    session.scalar(
                        select(func.count())
                        .select_from(VectorStoreFile)
                        .where(
                            VectorStoreFile.vector_store_id == store.id,
                            VectorStoreFile.status == "in_progress",
                        )
                    )
                    or 0
                )
                row = session.get(GraphBuild, store.id)
                if row is None:
                    row = GraphBuild(vector_store_id=store.id, user_id=user_id)
                    session.add(row)
                row.status, row.error_message = "in_progress", None
                row.chunks_total = len(self._pending_chunks(session, store.id))
                row.chunks_done = row.triples_added = 0
                row.files_in_progress = indexing
                row.model = self.extractor.model
                row.started_at, row.finished_at = datetime.now(UTC), None
                session.flush()
                return self._status(session, store.id)

        try:
            info = await asyncio.to_thread(begin)
        except BaseException:
            await asyncio.to_thread(claims.release, CLAIM_KIND, store_id)
            raise
        self._tasks[info.vector_store_id] = asyncio.get_running_loop().create_task(
            self._build(info.vector_store_id, user_id)
        )
        return info

    async def build(self, user_id: int | None, store_id: str) -> BuildInfo:
        """Start a build and wait for it (tests, scripts)."""
        info = await self.start_build(user_id, store_id)
        await self.wait(info.vector_store_id)
        return await asyncio.to_thread(self.status, user_id, store_id)

    async def wait(self, store_id: str) -> None:
        task = self._tasks.get(store_id)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def mark_interrupted(self) -> int:
        """At start: builds a stopped server left ``in_progress`` become ``failed`` (the
        chunks they read keep their triples; building again reads the rest). A build
        another live server holds the claim of is running there and stays as it is."""
        claims = self.kb.database.claims
        with self.kb.database.session() as session:
            found = list(
                session.scalars(
                    select(GraphBuild.vector_store_id).where(GraphBuild.status == "in_progress")
                )
            )
        marked = 0
        for store_id in found:
            if not claims.claim(CLAIM_KIND, store_id):
                continue  # building on another server
            try:
                with self.kb.database.session(write=True) as session:
                    result = session.execute(
                        update(GraphBuild)
                        .where(
                            GraphBuild.vector_store_id == store_id,
                            GraphBuild.status == "in_progress",  # not finished meanwhile
                        )
                        .values(
                            status="failed",
                            error_message="interrupted by a server restart; build again to go on",
                            finished_at=datetime.now(UTC),
                        )
                        .execution_options(synchronize_session=False)
                    )
                    marked += int(getattr(result, "rowcount", 0) or 0)
            finally:
                claims.release(CLAIM_KIND, store_id)
        return marked

    async def _build(self, store_id: str, user_id: int | None) -> None:
        try:
            await self._build_claimed(store_id, user_id)
        finally:
            await asyncio.to_thread(self.kb.database.claims.release, CLAIM_KIND, store_id)

    async def _build_claimed(self, store_id: str, user_id: int | None) -> None:
        try:
            await self._extract_all(store_id, user_id)
        except asyncio.CancelledError:
            await asyncio.to_thread(self._finish, store_id, "failed", "the build was stopped")
            raise
        except LLMasOSError as error:
            await asyncio.to_thread(self._finish, store_id, "failed", error.message)
        except Exception:  # a bug must not vanish: the build says it failed
            logger.exception("graph build of vector store %s failed", store_id)
            await asyncio.to_thread(
                self._finish, store_id, "failed", "internal error while building the graph"
            )
        else:
            await asyncio.to_thread(self._finish, store_id, "completed", None)

    async def _extract_all(self, store_id: str, user_id: int | None) -> None:
        pending = await asyncio.to_thread(self._pending, store_id)
        known = await asyncio.to_thread(self._known_names, store_id)
        done = added = 0
        tenant = f"user:{user_id}" if user_id is not None else "local"
        for chunk_ref in pending:
            loaded = await asyncio.to_thread(self._chunk_text, chunk_ref)
            if loaded is None:  # deleted meanwhile
                done += 1
                continue
            text, updated_at = loaded
            triples = await self.extractor.extract(text, tenant=tenant)
            names = {
                normalize_name(n): None
                for t in triples
                for n in (t.subject, t.object)
                if normalize_name(n) not in known
            }
            new: dict[str, Sequence[float]] = {}
            if names:
                result = await self.kb.engine.embed(self.kb.embedding_model, list(names))
                new = dict(zip(names, result.vectors, strict=True))
            merged = resolve_names(known, new)
            added += await asyncio.to_thread(
                self._commit, store_id, user_id, chunk_ref, updated_at, triples, merged, new
            )
            for name, vector in new.items():
                if merged[name] == name:
                    known[name] = vector
            done += 1
            await asyncio.to_thread(self._progress, store_id, done, added)

    def _pending(self, store_id: str) -> list[int]:
        with self.kb.database.session(write=True) as session:
            pending = self._pending_chunks(session, store_id)
            row = session.get(GraphBuild, store_id)
            if row is not None:
                row.chunks_total = len(pending)
            return pending

    def _known_names(self, store_id: str) -> dict[str, Sequence[float] | None]:
        """Normalized name -> embedding of the store's entities; a name key made under an
        older master key is rewritten on the way."""
        known: dict[str, Sequence[float] | None] = {}
        blinder = self.kb.index.blinder
        with self.kb.database.session(write=True) as session:
            for row in session.scalars(
                select(GraphEntity).where(GraphEntity.vector_store_id == store_id)
            ):
                name = normalize_name(self._name(row))
                key = blinder.keyed_hash(name)
                if row.name_key != key:
                    row.name_key = key
                known[name] = (
                    np.frombuffer(row.embedding, dtype=np.float32).tolist()
                    if row.embedding
                    else None
                )
        return known

    def _name(self, row: GraphEntity) -> str:
        return self.kb.cipher.decrypt_text(
            row.name, context=KG_ENTITY_NAME_CONTEXT.format(id=row.id)
        )

    def _chunk_text(self, chunk_ref: int) -> tuple[str, datetime] | None:
        with self.kb.database.session() as session:
            row = session.get(KnowledgeChunk, chunk_ref)
            if row is None or row.disabled:
                return None
            text = self.kb.cipher.decrypt_text(
                row.text, context=KB_CHUNK_TEXT_CONTEXT.format(id=row.id)
            )
            return text, row.updated_at

    def _commit(
        self,
        store_id: str,
        user_id: int | None,
        chunk_ref: int,
        updated_at: datetime,
        triples: Sequence[Triple],
        merged: dict[str, str],
        vectors: dict[str, Sequence[float]],
    ) -> int:
        """One chunk's triples and mark, in one transaction; 0 when the chunk changed."""
        blinder, cipher = self.kb.index.blinder, self.kb.cipher
        now = datetime.now(UTC)
        with self.kb.database.session(write=True) as session:
            chunk = session.get(KnowledgeChunk, chunk_ref)
            if (
                chunk is None
                or chunk.disabled
                or chunk.updated_at != updated_at
                or session.get(GraphExtraction, chunk_ref) is not None
            ):
                return 0
            ids: dict[str, int] = {}

            def entity(name: str, kind: str) -> int:
                key_name = merged.get(normalize_name(name), normalize_name(name))
                if key_name in ids:
                    return ids[key_name]
                key = blinder.keyed_hash(key_name)
                row = session.scalar(
                    select(GraphEntity).where(
                        GraphEntity.vector_store_id == store_id, GraphEntity.name_key == key
                    )
                )
                if row is None:
                    vector = vectors.get(key_name)
                    row = GraphEntity(
                        vector_store_id=store_id,
                        user_id=user_id,
                        name=b"",
                        name_key=key,
                        type=kind,
                        mentions=0,
                        embedding=(
                            np.asarray(vector, dtype=np.float32).tobytes()
                            if vector is not None
                            else None
                        ),
                        created_at=now,
                    )
                    session.add(row)
                    session.flush()
                    row.name = cipher.encrypt(
                        name, context=KG_ENTITY_NAME_CONTEXT.format(id=row.id)
                    )
                elif row.type == "other" and kind != "other":
                    row.type = kind
                ids[key_name] = row.id
                return row.id

            for triple in triples:
                relation = GraphRelation(
                    vector_store_id=store_id,
                    user_id=user_id,
                    subject_id=entity(triple.subject, triple.subject_type),
                    predicate=b"",
                    object_id=entity(triple.object, triple.object_type),
                    chunk_id=chunk_ref,
                    created_at=now,
                )
                session.add(relation)
                session.flush()
                relation.predicate = cipher.encrypt(
                    triple.predicate, context=KG_RELATION_PREDICATE_CONTEXT.format(id=relation.id)
                )
            session.add(
                GraphExtraction(
                    chunk_id=chunk_ref,
                    vector_store_id=store_id,
                    triples=len(triples),
                    extracted_at=now,
                )
            )
            return len(triples)

    def _progress(self, store_id: str, done: int, added: int) -> None:
        with self.kb.database.session(write=True) as session:
            row = session.get(GraphBuild, store_id)
            if row is not None:
                row.chunks_done, row.triples_added = done, added

    def _finish(self, store_id: str, status: str, message: str | None) -> None:
        """Recount mentions, drop entities no triple names any more, record the outcome."""
        with self.kb.database.session(write=True) as session:
            chunks_of: dict[int, set[int]] = {}
            for subject, obj, chunk in session.execute(
                select(GraphRelation.subject_id, GraphRelation.object_id, GraphRelation.chunk_id)
                .where(GraphRelation.vector_store_id == store_id)
            ):  # fmt: skip
                chunks_of.setdefault(subject, set()).add(chunk)
                chunks_of.setdefault(obj, set()).add(chunk)
            for row in session.scalars(
                select(GraphEntity).where(GraphEntity.vector_store_id == store_id)
            ):
                mentions = len(chunks_of.get(row.id, ()))
                if mentions == 0:
                    session.delete(row)
                elif row.mentions != mentions:
                    row.mentions = mentions
            build = session.get(GraphBuild, store_id)
            if build is not None:
                build.status, build.error_message = status, message
                build.finished_at = datetime.now(UTC)
                if self.extractor.model:
                    build.model = self.extractor.model

    # --- reading ---------------------------------------------------------------------------

    def load(self, store_id: str) -> LoadedGraph:
        """The store's graph (cached until its tables change)."""
        with self.kb.database.session() as session:
            signature = tuple(
                int(v or 0)
                for model in (GraphRelation, GraphEntity)
                for v in session.execute(
                    select(func.count(), func.max(model.id)).where(
                        model.vector_store_id == store_id
                    )
                ).one()
            )
            cached = self._cache.get(store_id)
            if cached is not None and cached.signature == signature:
                return cached
            entities = []
            embeddings: dict[int, np.ndarray] = {}
            for row in session.scalars(
                select(GraphEntity).where(GraphEntity.vector_store_id == store_id)
            ):
                entities.append(Entity(row.id, self._name(row), row.type, row.mentions))
                if row.embedding:
                    embeddings[row.id] = np.frombuffer(row.embedding, dtype=np.float32)
            edges = [
                Edge(
                    row.id,
                    row.subject_id,
                    self.kb.cipher.decrypt_text(
                        row.predicate, context=KG_RELATION_PREDICATE_CONTEXT.format(id=row.id)
                    ),
                    row.object_id,
                    row.chunk_id,
                )
                for row in session.scalars(
                    select(GraphRelation)
                    .where(GraphRelation.vector_store_id == store_id)
                    .order_by(GraphRelation.id)
                )
            ]
        graph = Graph.of(entities, edges)
        keys = {normalize_name(e.name): e.id for e in graph.connected()}
        loaded = LoadedGraph(signature, graph, keys, embeddings)
        if len(self._cache) > 32:
            self._cache.clear()
        self._cache[store_id] = loaded
        return loaded

    def entities(self, user_id: int | None, store_id: str, limit: int = 100) -> list[Entity]:
        """The store's entities that some triple names, most mentioned first."""
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("limit: between 1 and 1000", param="limit")
        store = self.status(user_id, store_id).vector_store_id
        found = self.load(store).graph.connected()
        return sorted(found, key=lambda e: (-e.mentions, e.name.casefold(), e.id))[:limit]

    def ranking(self, store_id: str, hit_chunks: Sequence[int]) -> list[int]:
        """Graph mode: the chunks the graph reaches from these hits (see `graph_ranking`)."""
        from llmasos.knowledge.graph import graph_ranking

        return graph_ranking(self.load(store_id).graph, hit_chunks)

    async def query(
        self,
        user_id: int | None,
        store_id: str,
        question: str,
        *,
        mode: GraphMode = "auto",
        hops: int = 1,
        max_hops: int = MAX_HOPS,
        limit: int = 20,
    ) -> GraphAnswer:
        """Answer "what is connected to X" (neighbourhood, ``hops`` deep) or "how is X
        related to Y" (the shortest path, at most ``max_hops``); ``auto`` picks path when
        the question names two entities. Every edge carries its citation."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequestError("query: must be non-empty text", param="query")
        if len(question) > MAX_QUESTION_CHARS:
            raise InvalidRequestError(
                f"query: at most {MAX_QUESTION_CHARS} characters", param="query"
            )
        if mode not in ("auto", "neighbourhood", "path"):
            raise InvalidRequestError("mode: one of auto, neighbourhood, path", param="mode")
        for name, value in (("hops", hops), ("max_hops", max_hops)):
            if not 1 <= value <= MAX_HOPS:
                raise InvalidRequestError(f"{name}: between 1 and {MAX_HOPS}", param=name)
        if not 1 <= limit <= MAX_EDGES:
            raise InvalidRequestError(f"limit: between 1 and {MAX_EDGES}", param="limit")
        info = await asyncio.to_thread(self.status, user_id, store_id)
        loaded = await asyncio.to_thread(self.load, info.vector_store_id)
        chosen = "path" if mode == "path" else "neighbourhood"
        if not loaded.keys:
            message = (
                "the graph of this store is empty: build it with `llmasos kg build`"
                if info.status in ("none", "completed")
                else f"the graph has no entities yet (build {info.status})"
            )
            return GraphAnswer(question, chosen, False, message, build=info)
        matched = await self._match(question, loaded)
        if mode == "auto":
            chosen = "path" if len(matched) >= 2 else "neighbourhood"
        if not matched or (chosen == "path" and len(matched) < 2):
            wanted = "two entities" if chosen == "path" else "an entity"
            message = f"the question names {wanted} of the graph: not found"
            if matched:
                message = f"only {matched[0].entity.name!r} was found; a path needs two entities"
            return GraphAnswer(question, chosen, False, message, matched, build=info)
        graph = loaded.graph
        if chosen == "path":
            start, goal = matched[0].entity, matched[1].entity
            path = graph.shortest_path(start.id, goal.id, max_hops)
            if path is None:
                message = (
                    f"no connection of at most {max_hops} hops between {start.name!r} and "
                    f"{goal.name!r}"
                )
                return GraphAnswer(question, chosen, False, message, matched[:2], build=info)
            steps = [(hop, edge) for hop, edge in enumerate(path, start=1)]
            matched = matched[:2]
            message = f"{start.name} and {goal.name} are {len(path)} hop(s) apart"
        else:
            matched = matched[:3]
            steps = graph.neighbourhood([m.entity.id for m in matched], hops, limit)
            names = ", ".join(m.entity.name for m in matched)
            message = f"{len(steps)} connection(s) of {names} within {hops} hop(s)"
            if not steps:
                message = f"{names} has no connections in the graph"
        edges = await asyncio.to_thread(self._cite, user_id, graph, steps)
        return GraphAnswer(question, chosen, bool(edges), message, matched, edges, info)

    async def _match(self, question: str, loaded: LoadedGraph) -> list[MatchedEntity]:
        """Entities the question names: by name (whole words, longest first, in the order
        they appear), else by embedding similarity."""
        text = f" {normalize_name(question)} "
        spans: list[tuple[int, int, int]] = []
        for name, ident in sorted(loaded.keys.items(), key=lambda item: -len(item[0])):
            found = re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text)
            if found is None:
                continue
            start, end = found.span()
            if any(s < end and start < e for s, e, _ in spans):
                continue
            spans.append((start, end, ident))
        graph = loaded.graph
        if spans:
            return [MatchedEntity(graph.entities[i], "name") for _, _, i in sorted(spans)]
        if not loaded.embeddings:
            return []
        vector = np.asarray(
            (await self.kb.engine.embed(self.kb.embedding_model, [question])).vectors[0],
            dtype=np.float32,
        )
        scored = []
        for ident in loaded.keys.values():
            emb = loaded.embeddings.get(ident)
            if emb is None:
                continue
            norm = float(np.linalg.norm(emb) * np.linalg.norm(vector))
            similarity = float(emb @ vector) / norm if norm else 0.0
            if similarity >= ENTITY_MATCH_SIMILARITY:
                scored.append((similarity, ident))
        scored.sort(reverse=True)
        return [MatchedEntity(graph.entities[i], "embedding", s) for s, i in scored[:2]]

    def _cite(
        self, user_id: int | None, graph: Graph, steps: Sequence[tuple[int, Edge]]
    ) -> list[AnswerEdge]:
        chunk_ids = {edge.chunk_id for _, edge in steps}
        with self.kb.database.session() as session:
            rows = {
                row.id: (row, filename)
                for row, filename in session.execute(
                    select(KnowledgeChunk, KnowledgeFile.filename)
                    .join(KnowledgeFile, KnowledgeFile.id == KnowledgeChunk.file_id)
                    .where(KnowledgeChunk.id.in_(chunk_ids))
                )
            }
            texts = {
                ident: self.kb.cipher.decrypt_text(
                    row.text, context=KB_CHUNK_TEXT_CONTEXT.format(id=ident)
                )
                for ident, (row, _) in rows.items()
            }
        edges = []
        for hop, edge in steps:
            found = rows.get(edge.chunk_id)
            if found is None:  # the chunk went between loading and citing
                continue
            row, filename = found
            subject, obj = graph.entities[edge.subject], graph.entities[edge.object]
            quote = best_quote(texts[edge.chunk_id], subject.name, obj.name)
            citation = Citation(f"chunk_{row.id}", row.file_id, filename, quote)
            edges.append(AnswerEdge(subject.name, edge.predicate, obj.name, hop, citation))
        return edges


def best_quote(text: str, *names: str) -> str:
    """The sentence of ``text`` naming most of ``names`` (the first when none does), cut at
    `QUOTE_CHARS`."""
    sentences = [s.strip() for s in _SENTENCE.split(text) if s.strip()] or [text.strip()]
    wanted = [normalize_name(n) for n in names if n]

    def score(sentence: str) -> int:
        folded = normalize_name(sentence)
        return sum(1 for n in wanted if n and n in folded)

    best = max(sentences, key=score)
    return best if len(best) <= QUOTE_CHARS else best[: QUOTE_CHARS - 1] + "…"
