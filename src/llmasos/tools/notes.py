"""Notes: a user's notes, found by words and by meaning, and the notes tools.

A `NoteStore` keeps each note's title, body and tags sealed in the ``notes`` table and
indexes them in the shared retrieval index (collection ``notes``, one namespace per owner)
in the same transaction, so a note is searchable exactly when it exists. Embeddings come
from the kernel's embed syscall. Creating, changing and deleting take an idempotency key
(a task's ``task:step``), so a resumed task never acts twice. The tools ``notes_create``,
``notes_search``, ``notes_update`` and ``notes_delete`` (permission ``notes``) call it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry, RetrievalMode
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import Note
from llmasos.tools.records import Owner, RowIds, Sealed, check_text, epoch, now, once

COLLECTION: Final = "notes"
NOTE_IDS: Final = RowIds("note", "note")
MAX_TITLE_CHARS: Final = 200
MAX_BODY_CHARS: Final = 20_000
MAX_TAGS: Final = 16
MAX_K: Final = 50


def check_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidRequestError(f"tags: a list of at most {MAX_TAGS} words", param="tags")
    return [check_text(tag, "tags", 40) for tag in tags]


class NoteStore:
    """The notes of every owner in one database."""

    def __init__(
        self,
        database: Database,
        engine: EngineClientInterface,
        cipher: ContentCipher,
        master_key: bytes,
        embedding_model: str | None = None,
    ) -> None:
        self.database = database
        self.engine = engine
        self.cipher = cipher
        self.sealed = Sealed(cipher, "notes")
        self.embedding_model = embedding_model
        self.index = HybridIndex(database, COLLECTION, TermBlinder(master_key))
        self.reindex_stale()

    def reindex_stale(self) -> int:
        """Re-blind the index terms of notes indexed under an older master key."""
        return reindex_stale(self.database, self.index, self.cipher)

    # --- rows ------------------------------------------------------------------------------

    def _note(self, row: Note, score: float | None = None) -> dict[str, Any]:
        data = self.sealed.open(row.id, row.content)
        note: dict[str, Any] = {
            "id": NOTE_IDS.format(row.id),
            "object": "note",
            "title": data.get("title", ""),
            "body": data.get("body", ""),
            "tags": list(data.get("tags", [])),
            "created_at": epoch(row.created_at),
            "updated_at": epoch(row.updated_at),
        }
        if score is not None:
            note["score"] = round(score, 6)
        return note

    def _row(self, session: Session, owner: Owner, note_id: str) -> Note:
        row = session.get(Note, NOTE_IDS.parse(note_id))
        if row is None or row.owner != owner.key:
            raise NOTE_IDS.missing(note_id)
        return row

    def _entry(self, row: Note, data: dict[str, Any], vector: Sequence[float]) -> IndexEntry:
        return IndexEntry(
            ref_id=row.id,
            namespace=row.owner,
            text=_indexed_text(data),
            embedding=vector,
            created_at=row.created_at,
            user_id=row.user_id,
        )

    async def _embed(self, data: dict[str, Any]) -> list[float]:
        result = await self.engine.embed(self.embedding_model, [_indexed_text(data)])
        return result.vectors[0]

    # --- API -------------------------------------------------------------------------------

    async def create(
        self,
        owner: Owner,
        title: str,
        body: str = "",
        tags: list[str] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        data = {
            "title": check_text(title, "title", MAX_TITLE_CHARS),
            "body": check_text(body, "body", MAX_BODY_CHARS, required=False),
            "tags": check_tags(tags),
        }
        vector = await self._embed(data)

        def act(session: Session) -> dict[str, Any]:
            moment = now()
            row = Note(
                owner=owner.key,
                user_id=owner.user_id,
                content=b"",
                created_at=moment,
                updated_at=moment,
            )
            session.add(row)
            session.flush()
            row.content = self.sealed.seal(row.id, data)
            self.index.add(session, [self._entry(row, data, vector)])
            return self._note(row)

        return await self._once(owner, idempotency_key, "notes_create", act)

    async def _once(self, owner: Owner, key: str | None, tool: str, act: Any) -> dict[str, Any]:
        result, _ = await asyncio.to_thread(once, self.database, self.cipher, owner, key, tool, act)
        return result

    def get(self, owner: Owner, note_id: str) -> dict[str, Any]:
        with self.database.session() as session:
            return self._note(self._row(session, owner, note_id))

    def list_notes(
        self, owner: Owner, *, limit: int = 100, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Notes, most recently created first; ``after`` (an id) continues a page."""
        statement = select(Note).where(Note.owner == owner.key)
        if after is not None:
            statement = statement.where(Note.id < NOTE_IDS.parse(after))
        statement = statement.order_by(Note.id.desc()).limit(max(1, min(limit, 1000)))
        with self.database.session() as session:
            return [self._note(row) for row in session.scalars(statement)]

    async def search(
        self, owner: Owner, query: str, *, k: int = 10, mode: RetrievalMode = "hybrid"
    ) -> list[dict[str, Any]]:
        """The ``k`` notes that best match ``query`` by words and meaning, best first."""
        query = check_text(query, "query", 2000)
        if not 1 <= k <= MAX_K:
            raise InvalidRequestError(f"k: must be between 1 and {MAX_K}", param="k")
        if mode not in ("hybrid", "bm25", "vector"):
            raise InvalidRequestError("mode: use hybrid, bm25 or vector", param="mode")
        vector = None
        if mode != "bm25":
            vector = (await self.engine.embed(self.embedding_model, [query])).vectors[0]

        def run() -> list[dict[str, Any]]:
            hits = self.index.search(owner.key, query, vector, k=k, mode=mode)
            with self.database.session() as session:
                rows = {
                    row.id: row
                    for row in session.scalars(
                        select(Note).where(
                            Note.id.in_([h.ref_id for h in hits]), Note.owner == owner.key
                        )
                    )
                }
                return [self._note(rows[h.ref_id], h.score) for h in hits if h.ref_id in rows]

        return await asyncio.to_thread(run)

    async def update(
        self,
        owner: Owner,
        note_id: str,
        *,
        title: str | None = None,
        body: str | None = None,
        tags: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Change a note's title, body or tags (what is not given stays)."""
        if title is None and body is None and tags is None:
            raise InvalidRequestError("nothing to change: give title, body or tags")
        current = await asyncio.to_thread(self.get, owner, note_id)
        data = {
            "title": check_text(current["title"] if title is None else title, "title", 200),
            "body": check_text(
                current["body"] if body is None else body, "body", MAX_BODY_CHARS, required=False
            ),
            "tags": check_tags(current["tags"] if tags is None else tags),
        }
        vector = await self._embed(data)

        def act(session: Session) -> dict[str, Any]:
            row = self._row(session, owner, note_id)
            row.content = self.sealed.seal(row.id, data)
            row.updated_at = now()
            self.index.update(session, self._entry(row, data, vector))
            return self._note(row)

        return await self._once(owner, idempotency_key, "notes_update", act)

    async def delete(
        self, owner: Owner, note_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        def act(session: Session) -> dict[str, Any]:
            row = self._row(session, owner, note_id)
            title = self.sealed.open(row.id, row.content).get("title", "")
            self.index.remove(session, [row.id])
            session.delete(row)
            return {"id": note_id, "object": "note.deleted", "deleted": True, "title": title}

        return await self._once(owner, idempotency_key, "notes_delete", act)


def reindex_stale(database: Database, index: HybridIndex, cipher: ContentCipher) -> int:
    """See `NoteStore.reindex_stale`; usable without a kernel (``keys rotate-master``)."""
    sealed = Sealed(cipher, "notes")
    with database.session(write=True) as session:

        def texts_of(ids: list[int]) -> Iterator[tuple[int, str]]:
            for row in session.scalars(select(Note).where(Note.id.in_(ids))):
                yield row.id, _indexed_text(sealed.open(row.id, row.content))

        return index.reblind_stale(session, texts_of)


def _indexed_text(data: dict[str, Any]) -> str:
    tags = " ".join(data.get("tags", []))
    return "\n".join(part for part in (data.get("title", ""), data.get("body", ""), tags) if part)
