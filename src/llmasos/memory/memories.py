"""Long-term memory per user: items that are added, found, edited and forgotten.

A `MemoryStore` keeps memory items in the ``memories`` table (text sealed with the content
cipher, context ``memory:<id>``) and indexes each in the shared retrieval index (collection
``memory``, one namespace per owner), in the same transaction. Embeddings come from the
kernel's embed syscall. An owner is a user (``user:<id>``) or, with authentication off, the
machine's owner (``local``); every read and write is scoped to one owner, so another
owner's id is simply not found. Adding a fact that is already there (same normalised text,
or an embedding at least `DUPLICATE_SIMILARITY` close with the same kind, except for events,
which happen again) returns the existing item — nothing is ever deleted or replaced by an
add. `extract` asks the model for facts in a conversation under a JSON schema
(grammar-constrained decoding) and adds them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.kernel.interface import EngineClientInterface, GenerateRequest
from llmasos.retrieval.hybrid import HybridIndex, metadata_equals
from llmasos.retrieval.interface import IndexEntry, RetrievalMode, SearchFilters
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.crypto import ContentCipher, load_master_key
from llmasos.storage.database import Database
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import Memory, MemorySetting
from llmasos.types import SamplingParams, StructuredOutput

COLLECTION: Final = "memory"
KINDS: Final = ("fact", "preference", "event", "document_note")
SOURCES: Final = ("conversation", "app", "user")
MAX_TEXT_CHARS: Final = 4000
"""Longer items are refused (413): a memory is a fact, not a document."""
MAX_METADATA_BYTES: Final = 4096
MAX_K: Final = 100
DUPLICATE_SIMILARITY: Final = 0.95
OCCURRENCE_KINDS: Final = frozenset({"event"})
"""Kinds that record something that happened: two alike are two occurrences, so only the
exact same text is recognised as a duplicate, never a merely similar one."""
ID_PREFIX: Final = "mem_"
_ID = re.compile(r"mem_([1-9][0-9]{0,17})")

register_encrypted_column(Memory.__table__, "text", context="memory:{id}")  # type: ignore[arg-type]


class PayloadTooLargeError(InvalidRequestError):
    """An item larger than the store takes."""

    status_code = 413
    default_code = "payload_too_large"


@dataclass(frozen=True)
class MemoryOwner:
    """Whose memory: a user, or the local owner (authentication off)."""

    key: str
    user_id: int | None

    @classmethod
    def for_user(cls, user_id: int | None) -> MemoryOwner:
        return cls("local", None) if user_id is None else cls(f"user:{user_id}", user_id)


@dataclass(frozen=True)
class MemoryItem:
    id: str
    text: str
    kind: str
    source: str
    source_ref: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "memory",
            "text": self.text,
            "kind": self.kind,
            "source": self.source,
            "source_ref": self.source_ref,
            "metadata": self.metadata,
            "created_at": int(self.created_at.timestamp()),
            "updated_at": int(self.updated_at.timestamp()),
        }
        if self.score is not None:
            data["score"] = round(self.score, 6)
        return data


@dataclass(frozen=True)
class AddResult:
    item: MemoryItem
    created: bool
    """False when the fact was already remembered (the existing item is returned)."""


@dataclass
class NewMemory:
    text: str
    kind: str = "fact"
    source: str = "user"
    source_ref: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Extraction:
    results: list[AddResult]
    model: str
    prompt_tokens: int
    completion_tokens: int


def memory_id(row_id: int) -> str:
    return f"{ID_PREFIX}{row_id}"


def parse_memory_id(value: str) -> int:
    match = _ID.fullmatch(value)
    if match is None:
        raise NotFoundError(f"no memory {value[:80]!r}", code="memory_not_found")
    return int(match.group(1))


def check_new_memory(item: NewMemory, where: str = "") -> NewMemory:
    """Validate one item; errors name the field (``text``, ``kind`` ...)."""
    prefix = f"{where}." if where else ""
    if not isinstance(item.text, str) or not item.text.strip():
        raise InvalidRequestError(f"{prefix}text: must be non-empty text", param=f"{prefix}text")
    if len(item.text) > MAX_TEXT_CHARS:
        raise PayloadTooLargeError(
            f"{prefix}text: {len(item.text)} characters; a memory holds at most {MAX_TEXT_CHARS}",
            param=f"{prefix}text",
        )
    check_kind(item.kind, f"{prefix}kind")
    if item.source not in SOURCES:
        raise InvalidRequestError(
            f"{prefix}source: {str(item.source)[:40]!r} is not one of {', '.join(SOURCES)}",
            param=f"{prefix}source",
        )
    check_metadata(item.metadata, f"{prefix}metadata")
    return item


def check_kind(kind: str, where: str = "kind") -> str:
    if kind not in KINDS:
        raise InvalidRequestError(
            f"{where}: {str(kind)[:40]!r} is not one of {', '.join(KINDS)}", param=where
        )
    return kind


def check_metadata(metadata: Any, where: str = "metadata") -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise InvalidRequestError(f"{where}: must be a JSON object", param=where)
    size = len(json.dumps(metadata, ensure_ascii=False))
    if size > MAX_METADATA_BYTES:
        raise PayloadTooLargeError(
            f"{where}: {size} bytes of JSON; at most {MAX_METADATA_BYTES}", param=where
        )
    return metadata


class MemoryStore:
    """Memory items of every owner in one database, searched through the hybrid index."""

    def __init__(
        self,
        database: Database,
        engine: EngineClientInterface,
        cipher: ContentCipher,
        *,
        embedding_model: str | None = None,
        master_key: bytes,
    ) -> None:
        self.database = database
        self.engine = engine
        self.cipher = cipher
        self.embedding_model = embedding_model
        self.blinder = TermBlinder(master_key)
        self.index = HybridIndex(database, COLLECTION, self.blinder)
        self.reindex_stale()

    @classmethod
    def open(
        cls, settings: Settings, database: Database, engine: EngineClientInterface
    ) -> MemoryStore:
        """The store of this installation: its master key, its default embedding model."""
        key = load_master_key(settings)
        return cls(
            database,
            engine,
            ContentCipher(key),
            master_key=key,
            embedding_model=settings.default_embedding_model,
        )

    # --- helpers ---------------------------------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        result = await self.engine.embed(self.embedding_model, list(texts))
        return result.vectors

    def _item(self, row: Memory, score: float | None = None) -> MemoryItem:
        return MemoryItem(
            id=memory_id(row.id),
            text=self.cipher.decrypt_text(row.text, context=f"memory:{row.id}"),
            kind=row.kind,
            source=row.source,
            source_ref=row.source_ref,
            metadata=dict(row.meta or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            score=score,
        )

    def _row(self, session: Session, owner: MemoryOwner, memory: str) -> Memory:
        row = session.get(Memory, parse_memory_id(memory))
        if row is None or row.owner != owner.key:
            raise NotFoundError(f"no memory {memory[:80]!r}", code="memory_not_found")
        return row

    def _new_row(self, owner: MemoryOwner, item: NewMemory, now: datetime) -> Memory:
        """A row for ``item``; its text is sealed once the row has an id (the context)."""
        return Memory(
            owner=owner.key,
            user_id=owner.user_id,
            kind=item.kind,
            source=item.source,
            source_ref=item.source_ref,
            text=b"",
            text_key=self.blinder.keyed_hash(item.text.strip()),
            meta=dict(item.metadata),
            created_at=now,
            updated_at=now,
        )

    def _entry(self, row: Memory, text: str, embedding: Sequence[float] | None) -> IndexEntry:
        return IndexEntry(
            ref_id=row.id,
            namespace=row.owner,
            text=text,
            embedding=embedding,
            created_at=row.created_at,
            user_id=row.user_id,
            kind=row.kind,
            metadata=dict(row.meta or {}),
        )

    # --- add -------------------------------------------------------------------------------

    async def add(
        self,
        owner: MemoryOwner,
        text: str,
        *,
        kind: str = "fact",
        source: str = "user",
        source_ref: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AddResult:
        item = NewMemory(text, kind, source, source_ref, dict(metadata or {}))
        return (await self.add_many(owner, [item]))[0]

    async def add_many(self, owner: MemoryOwner, items: Sequence[NewMemory]) -> list[AddResult]:
        """Add items (all validated before any is written; each is its own transaction);
        a duplicate returns the existing item."""
        for index, item in enumerate(items):
            check_new_memory(item, f"items[{index}]" if len(items) > 1 else "")
        if not items:
            return []
        vectors = await self.embed([item.text.strip() for item in items])
        return await asyncio.to_thread(self._insert_all, owner, list(items), vectors)

    def _insert_all(
        self, owner: MemoryOwner, items: list[NewMemory], vectors: list[list[float]]
    ) -> list[AddResult]:
        results: list[AddResult] = []
        for item, vector in zip(items, vectors, strict=True):
            similar = self._similar(owner, item.kind, vector)
            for attempt in range(3):
                try:
                    results.append(self._insert(owner, item, vector, similar))
                    break
                except IntegrityError:  # a concurrent add of the same text won: return it
                    if attempt == 2:
                        raise
        return results

    def _similar(self, owner: MemoryOwner, kind: str, vector: Sequence[float]) -> int | None:
        if kind in OCCURRENCE_KINDS:
            return None
        hits = self.index.search(
            owner.key, "", vector, k=1, filters=SearchFilters(kind=kind), mode="vector"
        )
        if hits and hits[0].similarity is not None and hits[0].similarity >= DUPLICATE_SIMILARITY:
            return hits[0].ref_id
        return None

    def _insert(
        self, owner: MemoryOwner, item: NewMemory, vector: Sequence[float], similar: int | None
    ) -> AddResult:
        text = item.text.strip()
        text_key = self.blinder.keyed_hash(text)
        with self.database.session(write=True) as session:
            existing = session.scalar(
                select(Memory).where(Memory.owner == owner.key, Memory.text_key == text_key)
            )
            if existing is None and similar is not None:
                existing = session.get(Memory, similar)
            if existing is not None and existing.owner == owner.key:
                if item.metadata and any(
                    existing.meta.get(key) != value for key, value in item.metadata.items()
                ):
                    existing.meta = {**existing.meta, **item.metadata}
                    existing.updated_at = datetime.now(UTC)
                    session.flush()
                    self.index.update(session, self._entry(existing, text, vector))
                return AddResult(self._item(existing), created=False)
            row = self._new_row(owner, item, datetime.now(UTC))
            session.add(row)
            session.flush()
            row.text = self.cipher.encrypt(text, context=f"memory:{row.id}")
            self.index.add(session, [self._entry(row, text, vector)])
            return AddResult(self._item(row), created=True)

    def import_items(
        self,
        owner: MemoryOwner,
        items: Sequence[NewMemory],
        vectors: Sequence[Sequence[float]],
        *,
        created_at: datetime | None = None,
    ) -> list[str]:
        """Bulk load (imports, benchmarks): items already embedded, one transaction, no
        similarity check. Exact duplicates (same normalised text) still fail the batch."""
        for index, item in enumerate(items):
            check_new_memory(item, f"items[{index}]")
        now = created_at or datetime.now(UTC)
        with self.database.session(write=True) as session:
            rows = [self._new_row(owner, item, now) for item in items]
            session.add_all(rows)
            session.flush()
            for row, item in zip(rows, items, strict=True):
                row.text = self.cipher.encrypt(item.text.strip(), context=f"memory:{row.id}")
            self.index.add(
                session,
                [
                    self._entry(row, item.text.strip(), vector)
                    for row, item, vector in zip(rows, items, vectors, strict=True)
                ],
            )
            return [memory_id(row.id) for row in rows]

    # --- read ------------------------------------------------------------------------------

    def get(self, owner: MemoryOwner, memory: str) -> MemoryItem:
        with self.database.session() as session:
            return self._item(self._row(session, owner, memory))

    def list_items(
        self,
        owner: MemoryOwner,
        *,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[MemoryItem]:
        """Items newest first; ``after`` (an id) continues a previous page."""
        if kind is not None:
            check_kind(kind)
        filters = SearchFilters(metadata=dict(metadata or {}))
        statement = select(Memory).where(Memory.owner == owner.key)
        if kind is not None:
            statement = statement.where(Memory.kind == kind)
        for key, value in filters.metadata.items():
            statement = statement.where(metadata_equals(Memory.meta, key, value))
        if after is not None:
            statement = statement.where(Memory.id < parse_memory_id(after))
        statement = statement.order_by(Memory.id.desc()).limit(max(1, min(limit, 1000)))
        with self.database.session() as session:
            return [self._item(row) for row in session.scalars(statement)]

    def count(self, owner: MemoryOwner) -> int:
        with self.database.session() as session:
            total = session.scalar(
                select(func.count()).select_from(Memory).where(Memory.owner == owner.key)
            )
        return int(total or 0)

    async def search(
        self,
        owner: MemoryOwner,
        query: str,
        *,
        k: int = 10,
        filters: SearchFilters | None = None,
        mode: RetrievalMode = "hybrid",
        min_similarity: float | None = None,
    ) -> list[MemoryItem]:
        """The ``k`` most relevant items, best first, each with its score.

        ``min_similarity`` keeps only items whose words matched or whose embedding is at
        least that close (what chat injection uses to leave unrelated memories out).
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("query: must be non-empty text", param="query")
        if len(query) > MAX_TEXT_CHARS:
            raise PayloadTooLargeError(
                f"query: {len(query)} characters; at most {MAX_TEXT_CHARS}", param="query"
            )
        if not 1 <= k <= MAX_K:
            raise InvalidRequestError(f"k: must be between 1 and {MAX_K}", param="k")
        vector = None if mode == "bm25" else (await self.embed([query]))[0]

        def run() -> list[MemoryItem]:
            hits = self.index.search(owner.key, query, vector, k=k, filters=filters, mode=mode)
            if min_similarity is not None:
                hits = [
                    h
                    for h in hits
                    if h.bm25_rank is not None
                    or (h.similarity is not None and h.similarity >= min_similarity)
                ]
            with self.database.session() as session:
                # by primary key only: with the owner in the condition, SQLite may walk the
                # owner's index instead, every item of a large memory (18 ms at 10^5)
                rows = {
                    row.id: row
                    for row in session.scalars(
                        select(Memory).where(Memory.id.in_([h.ref_id for h in hits]))
                    )
                    if row.owner == owner.key
                }
                return [self._item(rows[h.ref_id], h.score) for h in hits if h.ref_id in rows]

        return await asyncio.to_thread(run)

    # --- change and forget -----------------------------------------------------------------

    async def update(
        self,
        owner: MemoryOwner,
        memory: str,
        *,
        text: str | None = None,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryItem:
        """Change an item's text, kind or metadata (metadata is replaced as a whole)."""
        current = await asyncio.to_thread(self.get, owner, memory)
        new = NewMemory(
            text=current.text if text is None else text,
            kind=current.kind if kind is None else kind,
            source=current.source,
            metadata=current.metadata if metadata is None else dict(metadata),
        )
        check_new_memory(new)
        new_text = new.text.strip()
        vector = (await self.embed([new_text]))[0]

        def write() -> MemoryItem:
            with self.database.session(write=True) as session:
                row = self._row(session, owner, memory)
                row.kind = new.kind
                row.meta = dict(new.metadata)
                row.text = self.cipher.encrypt(new_text, context=f"memory:{row.id}")
                row.text_key = self.blinder.keyed_hash(new_text)
                row.updated_at = datetime.now(UTC)
                try:
                    session.flush()
                except IntegrityError:
                    raise InvalidRequestError(
                        "text: another memory already holds this text", param="text"
                    ) from None
                self.index.update(session, self._entry(row, new_text, vector))
                return self._item(row)

        return await asyncio.to_thread(write)

    def delete(self, owner: MemoryOwner, memory: str) -> None:
        with self.database.session(write=True) as session:
            row = self._row(session, owner, memory)
            self.index.remove(session, [row.id])
            session.delete(row)

    def delete_all(self, owner: MemoryOwner) -> int:
        """Forget everything of one owner; return how many items there were."""
        with self.database.session(write=True) as session:
            self.index.remove_namespace(session, owner.key)
            result = session.execute(delete(Memory).where(Memory.owner == owner.key))
            return int(getattr(result, "rowcount", 0) or 0)

    # --- settings --------------------------------------------------------------------------

    def chat_enabled(self, owner: MemoryOwner) -> bool:
        with self.database.session() as session:
            row = session.get(MemorySetting, owner.key)
            return bool(row and row.chat_enabled)

    def set_chat_enabled(self, owner: MemoryOwner, enabled: bool) -> None:
        with self.database.session(write=True) as session:
            row = session.get(MemorySetting, owner.key)
            if row is None:
                session.add(
                    MemorySetting(owner=owner.key, user_id=owner.user_id, chat_enabled=enabled)
                )
            else:
                row.chat_enabled = enabled

    # --- key rotation ----------------------------------------------------------------------

    def reindex_stale(self) -> int:
        """Re-blind the index terms and duplicate keys of items indexed under an older master
        key (after ``keys rotate-master``); embeddings are kept. Returns how many."""
        return reindex_stale(self.database, self.index, self.cipher)

    # --- extraction ------------------------------------------------------------------------

    async def extract(
        self,
        owner: MemoryOwner,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        tenant: str = "anonymous",
        source_ref: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_facts: int = 8,
    ) -> Extraction:
        """Ask the model which lasting facts about the user the messages state; add them."""
        transcript = _transcript(messages)
        schema = extraction_schema(max_facts)
        request = GenerateRequest(
            model=model,
            messages=[
                {"role": "system", "content": EXTRACTION_PROMPT},
                {"role": "user", "content": transcript},
            ],
            sampling=SamplingParams(
                temperature=0.0,
                max_tokens=96 * max_facts,
                structured=StructuredOutput(kind="json_schema", schema=schema),
            ),
            explicit=frozenset({"temperature", "max_tokens", "structured"}),
            tenant=tenant,
        )
        pieces: list[str] = []
        name, prompt_tokens, completion_tokens = model or "", 0, 0
        async for output in self.engine.generate(request):
            pieces.append(output.text)
            name = output.model
            if output.finished:
                prompt_tokens, completion_tokens = output.prompt_tokens, output.completion_tokens
        facts = parse_facts("".join(pieces))
        items = [
            NewMemory(
                text=fact["text"][:MAX_TEXT_CHARS],
                kind=fact.get("kind", "fact"),
                source="conversation",
                source_ref=source_ref,
                metadata=dict(metadata or {}),
            )
            for fact in facts
        ]
        results = await self.add_many(owner, items) if items else []
        return Extraction(results, name, prompt_tokens, completion_tokens)


def reindex_stale(database: Database, index: HybridIndex, cipher: ContentCipher) -> int:
    """See `MemoryStore.reindex_stale`; usable without a kernel (``keys rotate-master``)."""
    with database.session(write=True) as session:

        def texts_of(ids: list[int]) -> Iterator[tuple[int, str]]:
            for row in session.scalars(select(Memory).where(Memory.id.in_(ids))):
                text = cipher.decrypt_text(row.text, context=f"memory:{row.id}")
                row.text_key = index.blinder.keyed_hash(text)
                yield row.id, text

        return index.reblind_stale(session, texts_of)


def reindex_after_rotation(settings: Settings, database: Database) -> int:
    """Bring the memory index under the current master key; how many items were redone."""
    key = load_master_key(settings)
    index = HybridIndex(database, COLLECTION, TermBlinder(key))
    return reindex_stale(database, index, ContentCipher(key))


EXTRACTION_PROMPT = (
    "You read a conversation and list the lasting facts it states about the user: who they "
    "are, what they like or prefer, what happened to them, what they plan. Each fact is one "
    "short sentence that makes sense on its own, about the user in the third person. List "
    "nothing that is not stated. Answer with JSON only."
)


def extraction_schema(max_facts: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "facts": {
                "type": "array",
                "maxItems": max_facts,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 1, "maxLength": 400},
                        "kind": {"type": "string", "enum": list(KINDS)},
                    },
                    "required": ["text", "kind"],
                },
            }
        },
        "required": ["facts"],
    }


def parse_facts(text: str) -> list[dict[str, str]]:
    """The facts of the model's JSON answer; an answer cut short yields the complete ones."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    facts = data.get("facts") if isinstance(data, dict) else None
    if not isinstance(facts, list):
        return []
    result = []
    for fact in facts:
        if isinstance(fact, dict) and isinstance(fact.get("text"), str) and fact["text"].strip():
            kind = fact.get("kind") if fact.get("kind") in KINDS else "fact"
            result.append({"text": fact["text"].strip(), "kind": str(kind)})
    return result


def _transcript(messages: Iterable[Mapping[str, Any]]) -> str:
    lines = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequestError(f"messages[{index}]: must be an object", param="messages")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise InvalidRequestError(
                f"messages[{index}]: needs a role and text content", param=f"messages[{index}]"
            )
        lines.append(f"{role}: {content}")
    if not lines:
        raise InvalidRequestError("messages: must not be empty", param="messages")
    transcript = "\n".join(lines)
    if len(transcript) > 8 * MAX_TEXT_CHARS:
        raise PayloadTooLargeError(
            f"messages: {len(transcript)} characters; at most {8 * MAX_TEXT_CHARS}",
            param="messages",
        )
    return transcript


__all__ = [
    "KINDS",
    "SOURCES",
    "AddResult",
    "Extraction",
    "MemoryItem",
    "MemoryOwner",
    "MemoryStore",
    "NewMemory",
    "PayloadTooLargeError",
    "parse_memory_id",
]
