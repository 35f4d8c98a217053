"""Vector store file batches (OpenAI's ``vector_store.file_batch``): many files added to a
store in one call, followed and cancelled together.

A batch is a row (`VectorStoreFileBatch`: identity, store, owner, cancelled) plus the
``vector_store_files`` rows whose ``batch_id`` names it; its status and counts are computed
from theirs, so they are never out of step with the files. A file added again by a later
batch (or alone) leaves the earlier batch. Cancelling marks the batch's files still in
progress ``cancelled``; the ingestion worker then drops their jobs (it only commits a row
still ``in_progress``), and files already done stay indexed. Another owner's batch is "not
found".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.knowledge.stores import (
    STATUSES,
    FileCounts,
    FileToAdd,
    KnowledgeBase,
    StoreFileInfo,
)
from llmasos.storage.ids import new_id
from llmasos.storage.schema import VectorStoreFile, VectorStoreFileBatch

MAX_BATCH_FILES: Final = 500
"""OpenAI's limit on the files of one batch."""
_BATCH_ID = re.compile(r"vsfb_[0-9a-f]{24}")


@dataclass(frozen=True)
class FileBatchInfo:
    id: str
    vector_store_id: str
    created_at: datetime
    cancelled: bool
    file_counts: FileCounts

    @property
    def status(self) -> str:
        counts = self.file_counts
        if counts.in_progress:
            return "in_progress"
        if self.cancelled:
            return "cancelled"
        if counts.total and counts.failed == counts.total:
            return "failed"
        return "completed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "vector_store.files_batch",
            "created_at": int(self.created_at.timestamp()),
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "file_counts": self.file_counts.to_dict(),
        }


class FileBatches:
    """File batches of a `KnowledgeBase`'s stores."""

    def __init__(self, knowledge: KnowledgeBase) -> None:
        self.kb = knowledge

    def _batch(
        self, session: Session, user_id: int | None, store_id: str, batch_id: str
    ) -> VectorStoreFileBatch:
        self.kb._store(session, user_id, store_id)  # the store's own 404 first
        row = session.get(VectorStoreFileBatch, batch_id) if _BATCH_ID.fullmatch(batch_id) else None
        if row is None or row.user_id != user_id or row.vector_store_id != store_id:
            raise NotFoundError(
                f"no file batch {batch_id[:80]!r} in vector store {store_id[:80]}",
                code="file_batch_not_found",
            )
        return row

    def _info(self, session: Session, row: VectorStoreFileBatch) -> FileBatchInfo:
        counts = dict(
            session.execute(
                select(VectorStoreFile.status, func.count())
                .where(VectorStoreFile.batch_id == row.id)
                .group_by(VectorStoreFile.status)
            ).all()
        )
        return FileBatchInfo(
            id=row.id,
            vector_store_id=row.vector_store_id,
            created_at=row.created_at,
            cancelled=row.cancelled,
            file_counts=FileCounts(**{s: int(counts.get(s, 0)) for s in STATUSES}),
        )

    async def create(
        self, user_id: int | None, store_id: str, files: Sequence[FileToAdd]
    ) -> FileBatchInfo:
        """A new batch of ``files`` (1 to 500, each at most once), all attached in one
        transaction and queued for ingestion."""
        if not files:
            raise InvalidRequestError(
                "give file_ids or files: a batch needs files", param="file_ids"
            )
        if len(files) > MAX_BATCH_FILES:
            raise InvalidRequestError(
                f"a batch takes at most {MAX_BATCH_FILES} files, not {len(files)}",
                param="file_ids",
            )
        seen: set[str] = set()
        for entry in files:
            if entry.file_id in seen:
                raise InvalidRequestError(
                    f"file {entry.file_id[:80]!r} is twice in the batch", param="file_ids"
                )
            seen.add(entry.file_id)
        batch_id = new_id("vsfb")
        now = datetime.now(UTC)

        def begin() -> None:
            with self.kb.database.session(write=True) as session:
                self.kb._store(session, user_id, store_id)
                session.add(
                    VectorStoreFileBatch(
                        id=batch_id,
                        vector_store_id=store_id,
                        user_id=user_id,
                        cancelled=False,
                        created_at=now,
                    )
                )

        def drop() -> None:
            with self.kb.database.session(write=True) as session:
                row = session.get(VectorStoreFileBatch, batch_id)
                if row is not None:
                    session.delete(row)

        await asyncio.to_thread(begin)
        try:
            await self.kb.attach_files(user_id, store_id, files, batch_id=batch_id)
        except BaseException:
            await asyncio.to_thread(drop)  # no batch without its files
            raise
        return await asyncio.to_thread(self.get, user_id, store_id, batch_id)

    def get(self, user_id: int | None, store_id: str, batch_id: str) -> FileBatchInfo:
        with self.kb.database.session() as session:
            return self._info(session, self._batch(session, user_id, store_id, batch_id))

    def cancel(self, user_id: int | None, store_id: str, batch_id: str) -> FileBatchInfo:
        """Stop the batch's files still being indexed; what is done stays."""
        with self.kb.database.session(write=True) as session:
            row = self._batch(session, user_id, store_id, batch_id)
            row.cancelled = True
            session.execute(
                update(VectorStoreFile)
                .where(
                    VectorStoreFile.batch_id == row.id,
                    VectorStoreFile.status == "in_progress",
                )
                .values(
                    status="cancelled",
                    error_code=None,
                    error_message=None,
                    updated_at=datetime.now(UTC),
                )
            )
            session.flush()
            return self._info(session, row)

    def list_files(
        self,
        user_id: int | None,
        store_id: str,
        batch_id: str,
        *,
        status: str | None = None,
        limit: int = 20,
        after: str | None = None,
        order: str = "desc",
    ) -> list[StoreFileInfo]:
        self.get(user_id, store_id, batch_id)
        return self.kb.list_files(
            user_id, store_id, status=status, limit=limit, after=after, order=order,
            batch_id=batch_id,
        )  # fmt: skip
