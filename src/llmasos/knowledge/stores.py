"""Vector stores (knowledge bases), their files and chunks, and search over them.

`KnowledgeBase` is the one object the faces use: it owns the `FileStore`, the hybrid index
(collection ``knowledge``, one namespace per vector store) and the `IngestionWorker`.
Ownership is by user id (None: the machine's owner when authentication is off); another
owner's store, file or chunk is "not found". Adding a file to a store queues an ingestion
job and returns at once with status ``in_progress``; adding it again re-indexes it (the way
to retry a failed file). A chunk may be read, edited (re-embedded and re-indexed in the
same transaction, so search reflects it at once) and disabled (taken out of the index,
kept in the table). Search runs over what is indexed now and says the store's status, so a
store being indexed answers from the files already done.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.files import FileInfo, FileStore, keyset_page
from llmasos.knowledge.filters import Filter, check_attributes, matches
from llmasos.knowledge.graph import fuse_rankings
from llmasos.knowledge.graphextract import GraphExtractorInterface, ModelExtractor
from llmasos.knowledge.graphstore import KnowledgeGraph, forget_chunks
from llmasos.knowledge.ingest import IngestionWorker, chunk_entry, remove_chunks
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import RetrievalMode, SearchFilters, SearchHit
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.crypto import ContentCipher, load_master_key
from llmasos.storage.database import Database
from llmasos.storage.ids import new_id
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import (
    KB_CHUNK_ORIGINAL_CONTEXT,
    KB_CHUNK_TEXT_CONTEXT,
    KnowledgeChunk,
    KnowledgeFile,
    RetrievalEntry,
    VectorStore,
    VectorStoreFile,
    owned_by,
)

COLLECTION: Final = "knowledge"
DEFAULT_MAX_CHUNK_TOKENS: Final = 250
"""all-MiniLM-L6-v2 reads at most 256 tokens, two of them its [CLS] and [SEP]."""
DEFAULT_CHUNK_OVERLAP_TOKENS: Final = 50
MIN_CHUNK_TOKENS: Final = 32
MAX_CHUNK_TOKENS: Final = 4096
MAX_RESULTS: Final = 50
MAX_QUERY_CHARS: Final = 4000
MAX_NAME_CHARS: Final = 255
MAX_METADATA_PAIRS: Final = 16
STATUSES: Final = ("in_progress", "completed", "failed", "cancelled")
_STORE_ID = re.compile(r"vs_[0-9a-f]{24}")
_CHUNK_ID = re.compile(r"chunk_([1-9][0-9]{0,17})")

register_encrypted_column(KnowledgeChunk.__table__, "text", context=KB_CHUNK_TEXT_CONTEXT)  # type: ignore[arg-type]
register_encrypted_column(
    KnowledgeChunk.__table__,  # type: ignore[arg-type]
    "original_text",
    context=KB_CHUNK_ORIGINAL_CONTEXT,
)


@dataclass(frozen=True)
class Chunking:
    """OpenAI's ``static`` chunking strategy."""

    max_tokens: int = DEFAULT_MAX_CHUNK_TOKENS
    overlap_tokens: int = DEFAULT_CHUNK_OVERLAP_TOKENS

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": self.max_tokens,
                "chunk_overlap_tokens": self.overlap_tokens,
            },
        }


def parse_chunking(data: Any, default: Chunking | None = None) -> Chunking:
    """A checked chunking strategy from OpenAI's JSON (``auto`` or ``static``)."""
    if data is None:
        return default or Chunking()
    where = "chunking_strategy"
    if not isinstance(data, Mapping) or data.get("type") not in ("auto", "static"):
        raise InvalidRequestError(
            f'{where}: use {{"type": "auto"}} or {{"type": "static", "static": '
            '{"max_chunk_size_tokens": N, "chunk_overlap_tokens": M}}',
            param=where,
        )
    if data["type"] == "auto":
        return Chunking()
    static = data.get("static")
    if not isinstance(static, Mapping):
        raise InvalidRequestError(f"{where}.static: must be an object", param=f"{where}.static")
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    if not isinstance(size, int) or isinstance(size, bool):
        raise InvalidRequestError(
            f"{where}.static.max_chunk_size_tokens: must be an integer",
            param=f"{where}.static.max_chunk_size_tokens",
        )
    if not MIN_CHUNK_TOKENS <= size <= MAX_CHUNK_TOKENS:
        raise InvalidRequestError(
            f"{where}.static.max_chunk_size_tokens: must be between {MIN_CHUNK_TOKENS} and "
            f"{MAX_CHUNK_TOKENS}",
            param=f"{where}.static.max_chunk_size_tokens",
        )
    if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap <= size // 2:
        raise InvalidRequestError(
            f"{where}.static.chunk_overlap_tokens: must be an integer between 0 and half of "
            f"max_chunk_size_tokens ({size // 2})",
            param=f"{where}.static.chunk_overlap_tokens",
        )
    return Chunking(size, overlap)


def check_store_metadata(metadata: Any) -> dict[str, str]:
    """OpenAI's metadata: at most 16 string pairs (keys ≤ 64, values ≤ 512 characters)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or len(metadata) > MAX_METADATA_PAIRS:
        raise InvalidRequestError(
            f"metadata: an object of at most {MAX_METADATA_PAIRS} string pairs", param="metadata"
        )
    for key, value in metadata.items():
        if (
            not isinstance(key, str)
            or len(key) > 64
            or not isinstance(value, str)
            or len(value) > 512
        ):
            raise InvalidRequestError(
                "metadata: keys are strings of at most 64 characters, values strings of at "
                "most 512",
                param="metadata",
            )
    return dict(metadata)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise InvalidRequestError(
            f"name: text of at most {MAX_NAME_CHARS} characters", param="name"
        )
    return name


def chunk_id(row_id: int) -> str:
    return f"chunk_{row_id}"


@dataclass(frozen=True)
class FileCounts:
    in_progress: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.in_progress + self.completed + self.failed + self.cancelled

    def to_dict(self) -> dict[str, int]:
        return {
            "in_progress": self.in_progress,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "total": self.total,
        }


@dataclass(frozen=True)
class VectorStoreInfo:
    id: str
    name: str
    metadata: dict[str, str]
    chunking: Chunking
    created_at: datetime
    last_active_at: datetime
    usage_bytes: int
    file_counts: FileCounts

    @property
    def status(self) -> str:
        return "in_progress" if self.file_counts.in_progress else "completed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "vector_store",
            "created_at": int(self.created_at.timestamp()),
            "name": self.name,
            "usage_bytes": self.usage_bytes,
            "file_counts": self.file_counts.to_dict(),
            "status": self.status,
            "expires_after": None,
            "expires_at": None,
            "last_active_at": int(self.last_active_at.timestamp()),
            "metadata": self.metadata,
            "chunking_strategy": self.chunking.to_dict(),
        }


@dataclass(frozen=True)
class StoreFileInfo:
    """A file in a vector store (OpenAI's ``vector_store.file``), with its progress."""

    file_id: str
    vector_store_id: str
    filename: str
    status: str
    error_code: str | None
    error_message: str | None
    attributes: dict[str, Any]
    chunking: Chunking
    chunks_total: int
    chunks_done: int
    usage_bytes: int
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "usage_bytes": self.usage_bytes,
            "created_at": int(self.created_at.timestamp()),
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "last_error": (
                {"code": self.error_code, "message": self.error_message}
                if self.status == "failed"
                else None
            ),
            "chunking_strategy": self.chunking.to_dict(),
            "attributes": self.attributes,
            "filename": self.filename,
            "progress": {"chunks_total": self.chunks_total, "chunks_done": self.chunks_done},
        }


@dataclass(frozen=True)
class ChunkInfo:
    id: str
    vector_store_id: str
    file_id: str
    filename: str
    position: int
    text: str
    tokens: int
    page: int | None
    headings: list[str]
    disabled: bool
    edited: bool
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "vector_store.file.chunk",
            "vector_store_id": self.vector_store_id,
            "file_id": self.file_id,
            "filename": self.filename,
            "position": self.position,
            "text": self.text,
            "tokens": self.tokens,
            "page": self.page,
            "headings": self.headings,
            "disabled": self.disabled,
            "edited": self.edited,
            "updated_at": int(self.updated_at.timestamp()),
        }


@dataclass(frozen=True)
class FileToAdd:
    """One file to attach to a store, with its own attributes and chunking (None: the
    existing attributes, the store's chunking)."""

    file_id: str
    attributes: Mapping[str, Any] | None = None
    chunking: Chunking | None = None


@dataclass(frozen=True)
class SearchResult:
    """One chunk found by a search."""

    chunk: ChunkInfo
    score: float
    """Cosine similarity of query and chunk, 0..1 (0 when only the words matched)."""
    attributes: dict[str, Any]
    hit: SearchHit

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_id": self.chunk.file_id,
            "filename": self.chunk.filename,
            "score": round(self.score, 6),
            "attributes": self.attributes,
            "content": [{"type": "text", "text": self.chunk.text}],
            "chunk_id": self.chunk.id,
            "vector_store_id": self.chunk.vector_store_id,
            "page": self.chunk.page,
            "headings": self.chunk.headings,
        }


@dataclass(frozen=True)
class SearchPage:
    query: str
    results: list[SearchResult]
    stores: list[VectorStoreInfo] = field(default_factory=list)


class KnowledgeBase:
    """Files, vector stores and chunks of every owner in one database."""

    def __init__(
        self,
        database: Database,
        engine: EngineClientInterface,
        files: FileStore,
        *,
        master_key: bytes,
        embedding_model: str | None = None,
        graph_extractor: GraphExtractorInterface | None = None,
    ) -> None:
        self.database = database
        self.engine = engine
        self.files = files
        self.cipher = ContentCipher(master_key)
        self.embedding_model = embedding_model
        self.index = HybridIndex(database, COLLECTION, TermBlinder(master_key))
        self.worker = IngestionWorker(
            database, self.index, self.cipher, engine, files.blobs, embedding_model
        )
        self.graph = KnowledgeGraph(self, graph_extractor or ModelExtractor(engine))
        """The stores' knowledge graphs (``graphstore.py``)."""
        self.reindex_stale()

    @classmethod
    def open(
        cls, settings: Settings, database: Database, engine: EngineClientInterface
    ) -> KnowledgeBase:
        return cls(
            database,
            engine,
            FileStore.open(settings, database),
            master_key=load_master_key(settings),
            embedding_model=settings.default_embedding_model,
        )

    # --- files -----------------------------------------------------------------------------

    def delete_file(self, user_id: int | None, file_id: str) -> None:
        """Delete a file everywhere: from every store it is in (chunks and index entries in
        the same transaction), then its row and blob."""

        def drop_chunks(session: Session, file: str) -> None:
            remove_chunks(session, self.index, KnowledgeChunk.file_id == file)

        self.files.delete(user_id, file_id, before=drop_chunks)

    # --- stores ----------------------------------------------------------------------------

    def _store(self, session: Session, user_id: int | None, store_id: str) -> VectorStore:
        row = session.get(VectorStore, store_id) if _STORE_ID.fullmatch(store_id) else None
        if row is None or row.user_id != user_id:
            raise NotFoundError(f"no vector store {store_id[:80]!r}", code="vector_store_not_found")
        return row

    def _store_info(self, session: Session, row: VectorStore) -> VectorStoreInfo:
        counts = dict(
            session.execute(
                select(VectorStoreFile.status, func.count())
                .where(VectorStoreFile.vector_store_id == row.id)
                .group_by(VectorStoreFile.status)
            ).all()
        )
        usage = session.scalar(
            select(func.coalesce(func.sum(VectorStoreFile.usage_bytes), 0)).where(
                VectorStoreFile.vector_store_id == row.id
            )
        )
        return VectorStoreInfo(
            id=row.id,
            name=row.name,
            metadata=dict(row.meta or {}),
            chunking=Chunking(row.max_chunk_tokens, row.chunk_overlap_tokens),
            created_at=row.created_at,
            last_active_at=row.last_active_at,
            usage_bytes=int(usage or 0),
            file_counts=FileCounts(**{s: int(counts.get(s, 0)) for s in STATUSES}),
        )

    async def create_store(
        self,
        user_id: int | None,
        *,
        name: str = "",
        metadata: Mapping[str, str] | None = None,
        chunking: Chunking | None = None,
        file_ids: Sequence[str] = (),
    ) -> VectorStoreInfo:
        name, meta = check_name(name), check_store_metadata(metadata)
        chunking = chunking or Chunking()
        for file_id in file_ids:  # every file must exist before the store does
            await asyncio.to_thread(self.files.get, user_id, file_id)
        now = datetime.now(UTC)

        def write() -> str:
            with self.database.session(write=True) as session:
                row = VectorStore(
                    id=new_id("vs"),
                    user_id=user_id,
                    name=name,
                    meta=meta,
                    max_chunk_tokens=chunking.max_tokens,
                    chunk_overlap_tokens=chunking.overlap_tokens,
                    created_at=now,
                    last_active_at=now,
                )
                session.add(row)
                return row.id

        store_id = await asyncio.to_thread(write)
        for file_id in file_ids:
            await self.add_file(user_id, store_id, file_id)
        return await asyncio.to_thread(self.get_store, user_id, store_id)

    def get_store(self, user_id: int | None, store_id: str) -> VectorStoreInfo:
        with self.database.session() as session:
            return self._store_info(session, self._store(session, user_id, store_id))

    def list_stores(
        self, user_id: int | None, *, limit: int = 20, after: str | None = None, order: str = "desc"
    ) -> list[VectorStoreInfo]:
        statement = select(VectorStore).where(owned_by(VectorStore.user_id, user_id))
        with self.database.session() as session:
            cursor = self._store(session, user_id, after) if after is not None else None
            statement = keyset_page(statement, VectorStore, cursor, order)
            rows = list(session.scalars(statement.limit(max(1, min(limit, 1000)))))
            return [self._store_info(session, row) for row in rows]

    def find_store(self, user_id: int | None, name_or_id: str) -> VectorStoreInfo:
        """A store by id, else by its name (the newest of that name) — for the CLI."""
        with self.database.session() as session:
            if _STORE_ID.fullmatch(name_or_id):
                row = session.get(VectorStore, name_or_id)
                if row is not None and row.user_id == user_id:
                    return self._store_info(session, row)
            row = session.scalar(
                select(VectorStore)
                .where(owned_by(VectorStore.user_id, user_id), VectorStore.name == name_or_id)
                .order_by(VectorStore.created_at.desc())
                .limit(1)
            )
            if row is None:
                raise NotFoundError(
                    f"no vector store {name_or_id[:80]!r}", code="vector_store_not_found"
                )
            return self._store_info(session, row)

    def modify_store(
        self,
        user_id: int | None,
        store_id: str,
        *,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> VectorStoreInfo:
        with self.database.session(write=True) as session:
            row = self._store(session, user_id, store_id)
            if name is not None:
                row.name = check_name(name)
            if metadata is not None:
                row.meta = check_store_metadata(metadata)
            row.last_active_at = datetime.now(UTC)
            session.flush()
            return self._store_info(session, row)

    def delete_store(self, user_id: int | None, store_id: str) -> None:
        """Delete a store, its attachments, chunks and index entries (one transaction); the
        files stay (they may be in other stores)."""
        with self.database.session(write=True) as session:
            row = self._store(session, user_id, store_id)
            self.index.remove_namespace(session, row.id)
            session.query(KnowledgeChunk).filter(KnowledgeChunk.vector_store_id == row.id).delete()
            session.query(VectorStoreFile).filter(
                VectorStoreFile.vector_store_id == row.id
            ).delete()
            session.delete(row)

    # --- files in stores -------------------------------------------------------------------

    def _store_file_info(self, row: VectorStoreFile, filename: str) -> StoreFileInfo:
        return StoreFileInfo(
            file_id=row.file_id,
            vector_store_id=row.vector_store_id,
            filename=filename,
            status=row.status,
            error_code=row.error_code,
            error_message=row.error_message,
            attributes=dict(row.attributes or {}),
            chunking=Chunking(row.max_chunk_tokens, row.chunk_overlap_tokens),
            chunks_total=row.chunks_total,
            chunks_done=row.chunks_done,
            usage_bytes=row.usage_bytes,
            created_at=row.created_at,
        )

    def _store_file(
        self, session: Session, user_id: int | None, store_id: str, file_id: str
    ) -> tuple[VectorStoreFile, str]:
        store = self._store(session, user_id, store_id)
        found = session.execute(
            select(VectorStoreFile, KnowledgeFile.filename)
            .join(KnowledgeFile, KnowledgeFile.id == VectorStoreFile.file_id)
            .where(VectorStoreFile.vector_store_id == store.id, VectorStoreFile.file_id == file_id)
        ).first()
        if found is None:
            raise NotFoundError(
                f"no file {file_id[:80]!r} in vector store {store_id}", code="file_not_found"
            )
        return found[0], found[1]

    async def add_file(
        self,
        user_id: int | None,
        store_id: str,
        file_id: str,
        *,
        attributes: Mapping[str, Any] | None = None,
        chunking: Chunking | None = None,
    ) -> StoreFileInfo:
        """Attach a file and queue its ingestion; a file already attached is re-indexed
        (keeping its attributes unless new ones are given)."""
        added = await self.attach_files(
            user_id, store_id, [FileToAdd(file_id, attributes, chunking)]
        )
        return added[0]

    async def attach_files(
        self,
        user_id: int | None,
        store_id: str,
        files: Sequence[FileToAdd],
        *,
        batch_id: str | None = None,
    ) -> list[StoreFileInfo]:
        """Attach files in one transaction (all or none: an unknown file id attaches
        nothing) and queue their ingestion; ``batch_id`` names the batch they join."""
        checked = [
            (f.file_id, check_attributes(f.attributes) if f.attributes is not None else None)
            for f in files
        ]
        now = datetime.now(UTC)

        def write() -> list[tuple[StoreFileInfo, int]]:
            with self.database.session(write=True) as session:
                store = self._store(session, user_id, store_id)
                added = []
                for (file_id, attrs), wanted in zip(checked, files, strict=True):
                    file: FileInfo = self.files.get(user_id, file_id)
                    size = wanted.chunking or Chunking(
                        store.max_chunk_tokens, store.chunk_overlap_tokens
                    )
                    row = session.scalar(
                        select(VectorStoreFile).where(
                            VectorStoreFile.vector_store_id == store.id,
                            VectorStoreFile.file_id == file.id,
                        )
                    )
                    if row is None:
                        row = VectorStoreFile(
                            vector_store_id=store.id,
                            file_id=file.id,
                            user_id=user_id,
                            attributes=attrs or {},
                            created_at=now,
                            usage_bytes=0,
                        )
                        session.add(row)
                    elif attrs is not None:
                        row.attributes = attrs
                    row.status, row.error_code, row.error_message = "in_progress", None, None
                    row.max_chunk_tokens, row.chunk_overlap_tokens = (
                        size.max_tokens,
                        size.overlap_tokens,
                    )
                    row.chunks_total = row.chunks_done = 0
                    row.batch_id = batch_id
                    row.updated_at = now
                    session.flush()
                    added.append((self._store_file_info(row, file.filename), row.id))
                store.last_active_at = now
                return added

        added = await asyncio.to_thread(write)
        for _, row_id in added:
            self.worker.enqueue(row_id, now)
        return [info for info, _ in added]

    def get_file(self, user_id: int | None, store_id: str, file_id: str) -> StoreFileInfo:
        with self.database.session() as session:
            return self._store_file_info(*self._store_file(session, user_id, store_id, file_id))

    def update_file_attributes(
        self, user_id: int | None, store_id: str, file_id: str, attributes: Mapping[str, Any]
    ) -> StoreFileInfo:
        attrs = check_attributes(attributes)
        with self.database.session(write=True) as session:
            row, filename = self._store_file(session, user_id, store_id, file_id)
            row.attributes = attrs
            session.flush()
            return self._store_file_info(row, filename)

    def list_files(
        self,
        user_id: int | None,
        store_id: str,
        *,
        status: str | None = None,
        limit: int = 20,
        after: str | None = None,
        order: str = "desc",
        batch_id: str | None = None,
    ) -> list[StoreFileInfo]:
        if status is not None and status not in STATUSES:
            raise InvalidRequestError(
                f"filter: {status[:20]!r} is not one of {', '.join(STATUSES)}", param="filter"
            )
        with self.database.session() as session:
            store = self._store(session, user_id, store_id)
            statement = (
                select(VectorStoreFile, KnowledgeFile.filename)
                .join(KnowledgeFile, KnowledgeFile.id == VectorStoreFile.file_id)
                .where(VectorStoreFile.vector_store_id == store.id)
            )
            if status is not None:
                statement = statement.where(VectorStoreFile.status == status)
            if batch_id is not None:
                statement = statement.where(VectorStoreFile.batch_id == batch_id)
            if after is not None:
                cursor, _ = self._store_file(session, user_id, store_id, after)
                statement = statement.where(
                    VectorStoreFile.id > cursor.id
                    if order == "asc"
                    else VectorStoreFile.id < cursor.id
                )
            statement = statement.order_by(
                VectorStoreFile.id if order == "asc" else VectorStoreFile.id.desc()
            ).limit(max(1, min(limit, 1000)))
            return [self._store_file_info(row, name) for row, name in session.execute(statement)]

    def remove_file(self, user_id: int | None, store_id: str, file_id: str) -> None:
        """Detach a file from a store: its chunks and index entries go in one transaction;
        the file itself stays."""
        with self.database.session(write=True) as session:
            row, _ = self._store_file(session, user_id, store_id, file_id)
            remove_chunks(session, self.index, KnowledgeChunk.store_file_id == row.id)
            session.delete(row)

    # --- chunks ----------------------------------------------------------------------------

    def _chunk_info(self, row: KnowledgeChunk, filename: str) -> ChunkInfo:
        return ChunkInfo(
            id=chunk_id(row.id),
            vector_store_id=row.vector_store_id,
            file_id=row.file_id,
            filename=filename,
            position=row.position,
            text=self.cipher.decrypt_text(
                row.text, context=KB_CHUNK_TEXT_CONTEXT.format(id=row.id)
            ),
            tokens=row.tokens,
            page=row.page,
            headings=list(row.headings or []),
            disabled=row.disabled,
            edited=row.edited,
            updated_at=row.updated_at,
        )

    def _chunk(
        self, session: Session, user_id: int | None, store_id: str, chunk: str
    ) -> tuple[KnowledgeChunk, str]:
        store = self._store(session, user_id, store_id)
        match = _CHUNK_ID.fullmatch(chunk)
        row = session.get(KnowledgeChunk, int(match.group(1))) if match else None
        if row is None or row.vector_store_id != store.id:
            raise NotFoundError(
                f"no chunk {chunk[:80]!r} in vector store {store_id}", code="chunk_not_found"
            )
        file = session.get(KnowledgeFile, row.file_id)
        return row, file.filename if file is not None else ""

    def get_chunk(self, user_id: int | None, store_id: str, chunk: str) -> ChunkInfo:
        with self.database.session() as session:
            return self._chunk_info(*self._chunk(session, user_id, store_id, chunk))

    def list_chunks(
        self,
        user_id: int | None,
        store_id: str,
        file_id: str,
        *,
        limit: int = 100,
        after: int = -1,
    ) -> list[ChunkInfo]:
        """A file's chunks in order; ``after`` is a position."""
        with self.database.session() as session:
            row, filename = self._store_file(session, user_id, store_id, file_id)
            rows = session.scalars(
                select(KnowledgeChunk)
                .where(KnowledgeChunk.store_file_id == row.id, KnowledgeChunk.position > after)
                .order_by(KnowledgeChunk.position)
                .limit(max(1, min(limit, 1000)))
            )
            return [self._chunk_info(chunk, filename) for chunk in rows]

    async def update_chunk(
        self,
        user_id: int | None,
        store_id: str,
        chunk: str,
        *,
        text: str | None = None,
        disabled: bool | None = None,
    ) -> ChunkInfo:
        """Edit a chunk's text (re-embedded and re-indexed at once) and/or disable it (out of
        the index) or enable it (back in)."""
        if text is None and disabled is None:
            raise InvalidRequestError("give text and/or disabled", param="text")
        current = await asyncio.to_thread(self.get_chunk, user_id, store_id, chunk)
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InvalidRequestError("text: must be non-empty text", param="text")
        new_text = current.text if text is None else text.strip()
        now_disabled = current.disabled if disabled is None else bool(disabled)
        vector: list[float] | None = None
        tokens = current.tokens
        if not now_disabled and (text is not None or current.disabled):
            result = await self.engine.embed(self.embedding_model, [new_text])
            vector = result.vectors[0]
            if text is not None:
                tokens = max(0, len(await self.engine.tokenize(self.embedding_model, new_text)) - 2)

        def write() -> ChunkInfo:
            with self.database.session(write=True) as session:
                row, filename = self._chunk(session, user_id, store_id, chunk)
                original = KB_CHUNK_ORIGINAL_CONTEXT.format(id=row.id)
                if row.original_text is None and not row.edited:
                    # the first hand work: keep the chunker's text, so a re-index finds it
                    row.original_text = self.cipher.encrypt(current.text, context=original)
                if text is not None:
                    row.text = self.cipher.encrypt(
                        new_text, context=KB_CHUNK_TEXT_CONTEXT.format(id=row.id)
                    )
                    row.tokens, row.edited = tokens, True
                row.disabled = now_disabled
                if not row.edited and not row.disabled:
                    row.original_text = None  # back as the chunker made it
                row.updated_at = datetime.now(UTC)
                session.flush()
                forget_chunks(session, [row.id])  # the graph never cites the old text
                self.index.remove(session, [row.id])
                if vector is not None:  # enabled: indexed again with its (new) embedding
                    self.index.add(session, [chunk_entry(row, new_text, vector)])
                return self._chunk_info(row, filename)

        if not now_disabled and vector is None:
            # enabled before and after, text unchanged: nothing to re-index
            return current
        return await asyncio.to_thread(write)

    # --- search ----------------------------------------------------------------------------

    async def search(
        self,
        user_id: int | None,
        store_ids: Sequence[str],
        query: str,
        *,
        max_num_results: int = 10,
        filters: Filter | None = None,
        score_threshold: float = 0.0,
        mode: RetrievalMode = "hybrid",
        graph: bool = False,
    ) -> SearchPage:
        """The best chunks of these stores for ``query``, best first (hybrid rank), with
        each store's status (a store being indexed answers from what is indexed).

        ``graph``: graph mode — the chunks cited by the graph edges around the hits'
        entities are fused with the ranking (`llmasos.knowledge.graph.graph_ranking`); a
        store without a graph answers as without it."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("query: must be non-empty text", param="query")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidRequestError(
                f"query: {len(query)} characters; at most {MAX_QUERY_CHARS}", param="query"
            )
        if not 1 <= max_num_results <= MAX_RESULTS:
            raise InvalidRequestError(
                f"max_num_results: must be between 1 and {MAX_RESULTS}", param="max_num_results"
            )
        if not store_ids:
            raise InvalidRequestError(
                "vector_store_ids: name at least one", param="vector_store_ids"
            )
        # the query's embedding and the stores' checks at once: both are on every search's path
        embedding = (
            None
            if mode == "bm25"
            else asyncio.ensure_future(self.engine.embed(self.embedding_model, [query]))
        )
        try:
            stores = [await asyncio.to_thread(self.get_store, user_id, s) for s in store_ids]
        except BaseException:
            if embedding is not None:
                embedding.cancel()
                await asyncio.gather(embedding, return_exceptions=True)
            raise
        vector = None if embedding is None else (await embedding).vectors[0]

        def run() -> list[SearchResult]:
            found: list[tuple[SearchHit, str]] = []
            attributes: dict[tuple[str, str], dict[str, Any]] = {}
            for store in stores:
                with self.database.session() as session:
                    rows = session.execute(
                        select(VectorStoreFile.file_id, VectorStoreFile.attributes).where(
                            VectorStoreFile.vector_store_id == store.id,
                            VectorStoreFile.status == "completed",
                        )
                    ).all()
                allowed = {f for f, a in rows if filters is None or matches(filters, a or {})}
                attributes.update({(store.id, f): dict(a or {}) for f, a in rows})
                if not allowed:
                    continue
                search_filters = (
                    SearchFilters(metadata_in={"file_id": frozenset(allowed)})
                    if len(allowed) < len(rows)
                    else None
                )
                hits = self.index.search(
                    store.id, query, vector, k=max_num_results, filters=search_filters, mode=mode
                )
                if graph:
                    hits = self._graph_hits(store.id, hits, vector, allowed)
                found.extend((hit, store.id) for hit in hits)
            found.sort(key=lambda pair: -pair[0].score)
            results: list[SearchResult] = []
            with self.database.session() as session:
                names = dict(
                    session.execute(
                        select(KnowledgeFile.id, KnowledgeFile.filename).where(
                            KnowledgeFile.id.in_({f for _, f in attributes})
                        )
                    ).all()
                )
                # by primary key, the owner checked here: with it in the condition SQLite may
                # walk the owner's index instead, every chunk they have
                rows_by_id = {
                    row.id: row
                    for row in session.scalars(
                        select(KnowledgeChunk).where(
                            KnowledgeChunk.id.in_([h.ref_id for h, _ in found])
                        )
                    )
                    if row.user_id == user_id
                }
                for hit, store_id in found:
                    row = rows_by_id.get(hit.ref_id)
                    if row is None or row.disabled:
                        continue
                    score = max(0.0, min(1.0, hit.similarity or 0.0))
                    if score < score_threshold:
                        continue
                    results.append(
                        SearchResult(
                            self._chunk_info(row, names.get(row.file_id, "")),
                            score,
                            attributes.get((store_id, row.file_id), {}),
                            hit,
                        )
                    )
            return results[:max_num_results]

        results = await asyncio.to_thread(run)
        return SearchPage(query, results, stores)

    def _graph_hits(
        self,
        store_id: str,
        hits: list[SearchHit],
        vector: Sequence[float] | None,
        allowed_files: set[str],
    ) -> list[SearchHit]:
        """Hits fused with the graph's ranking; chunks only the graph found get their cosine
        from their index entry. Scores become the fused ones."""
        reached = self.graph.ranking(store_id, [h.ref_id for h in hits])
        if not reached:
            return hits
        by_id = {h.ref_id: h for h in hits}
        extra = [ref for ref in reached if ref not in by_id]
        with self.database.session() as session:
            rows = session.execute(  # by the unique (collection, ref_id); the store checked here
                select(
                    RetrievalEntry.ref_id,
                    RetrievalEntry.namespace,
                    RetrievalEntry.embedding,
                    RetrievalEntry.meta,
                ).where(
                    RetrievalEntry.collection == COLLECTION,
                    RetrievalEntry.ref_id.in_(extra),
                )
            ).all()
        query = np.asarray(vector, dtype=np.float32) if vector is not None else None
        for ref, namespace, embedding, meta in rows:
            if namespace != store_id or (meta or {}).get("file_id") not in allowed_files:
                continue
            similarity = None
            if query is not None and embedding:
                other = np.frombuffer(embedding, dtype=np.float32)
                norm = float(np.linalg.norm(other) * np.linalg.norm(query))
                similarity = float(other @ query) / norm if norm else 0.0
            by_id[int(ref)] = SearchHit(int(ref), 0.0, similarity=similarity)
        fused = fuse_rankings([h.ref_id for h in hits], [r for r in reached if r in by_id])
        return [
            replace(by_id[ref], score=1.0 / (60 + rank)) for rank, ref in enumerate(fused, start=1)
        ]

    # --- key rotation ----------------------------------------------------------------------

    def reindex_stale(self) -> int:
        """Re-blind index terms written under an older master key (embeddings kept)."""
        return reindex_stale(self.database, self.index, self.cipher)


def reindex_stale(database: Database, index: HybridIndex, cipher: ContentCipher) -> int:
    """See `KnowledgeBase.reindex_stale`; usable without a kernel (``keys rotate-master``)."""
    with database.session(write=True) as session:

        def texts_of(ids: list[int]) -> Iterator[tuple[int, str]]:
            for row in session.scalars(select(KnowledgeChunk).where(KnowledgeChunk.id.in_(ids))):
                context = KB_CHUNK_TEXT_CONTEXT.format(id=row.id)
                yield row.id, cipher.decrypt_text(row.text, context=context)

        return index.reblind_stale(session, texts_of)


def reindex_after_rotation(settings: Settings, database: Database) -> int:
    """Bring the knowledge index under the current master key; how many chunks were redone."""
    key = load_master_key(settings)
    return reindex_stale(
        database, HybridIndex(database, COLLECTION, TermBlinder(key)), ContentCipher(key)
    )


Ranker = Literal["auto", "default-2024-11-15", "hybrid", "bm25", "vector"]
RANKERS: Final = {"auto": "hybrid", "default-2024-11-15": "hybrid", "hybrid": "hybrid",
                  "bm25": "bm25", "vector": "vector"}  # fmt: skip
