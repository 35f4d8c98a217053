"""Versions of the semantic file system's files, and the transaction that makes each one.

`VersionStore` holds every owner's files as rows of ``fs_files`` (a file's identity, which
follows it across moves) and ``fs_versions`` (one row per write, move, delete and rollback:
the path, content digest, size and type after it), with the bytes once in a
content-addressed `BlobStore`. A new version is prepared outside any transaction (the
content converted, chunked and embedded through the kernel), then one write transaction
checks the file did not change meanwhile, writes the version row and swaps the file's
``fs_chunks`` rows and their entries in the shared hybrid index: the index never answers
from a version that is not current, after a rollback included. Each owner's distinct
contents count against the quota (507), exactly under concurrency from any number of
servers (SQLite's write lock; a per-owner advisory lock on PostgreSQL).
`llmasos.knowledge.filesystem.FileSystem` adds reads, find, summaries and shares.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Self

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from llmasos.config import Settings
from llmasos.errors import (
    InvalidRequestError,
    NotFoundError,
    StorageError,
)
from llmasos.kernel.interface import EngineClientInterface
from llmasos.knowledge.fsindex import (
    Derived,
    derive,
    embed_pieces,
    read_for_index,
)
from llmasos.knowledge.fspaths import basename, check_path
from llmasos.knowledge.fstypes import (
    FileExistsConflictError,
    FileOwner,
    QuotaExceededError,
    VersionInfo,
    file_not_found,
    short_type,
)
from llmasos.models.blobs import BlobStore, sha256_file
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.claims import claim_key
from llmasos.storage.crypto import ContentCipher, load_master_key
from llmasos.storage.database import Database
from llmasos.storage.rotation import register_encrypted_column
from llmasos.storage.schema import FsChunk, FsFile, FsShare, FsSummary, FsVersion

COLLECTION: Final = "fs"
WRITE_ATTEMPTS: Final = 4

register_encrypted_column(FsChunk.__table__, "text", context="fs_chunk:{id}")  # type: ignore[arg-type]
register_encrypted_column(FsSummary.__table__, "text", context="fs_summary:{id}")  # type: ignore[arg-type]


class _Stale(Exception):
    """The file changed between reading it and writing the new version: start again."""


@dataclass
class FileState:
    """What a version sets: the file's path, content and whether it is deleted."""

    path: str
    digest: str
    size: int
    media_type: str
    deleted: bool = False


@dataclass
class PreparedVersion:
    """A new version, derived and embedded before its transaction opens."""

    state: FileState
    derived: Derived | None
    vectors: list[list[float]] = field(default_factory=list)


def version_info(row: FsVersion, note: str | None = None) -> VersionInfo:
    return VersionInfo(
        path=row.path,
        version=row.number,
        operation=row.operation,
        deleted=row.deleted,
        digest=row.digest,
        size=row.size,
        media_type=row.media_type,
        type=short_type(row.media_type),
        modified_at=row.created_at,
        restored_from=row.restored_from,
        note=note,
    )


class VersionStore:
    """Owners' files and their versions: lookups, the quota, and the transaction that
    writes a version and swaps its index entries. `FileSystem` adds reads, find, summaries
    and shares."""

    def __init__(
        self,
        database: Database,
        engine: EngineClientInterface,
        blobs: BlobStore,
        *,
        master_key: bytes,
        quota_bytes: int,
        embedding_model: str | None = None,
    ) -> None:
        self.database = database
        self.engine = engine
        self.blobs = blobs
        self.cipher = ContentCipher(master_key)
        self.blinder = TermBlinder(master_key)
        self.index = HybridIndex(database, COLLECTION, self.blinder)
        self.quota_bytes = quota_bytes
        self.embedding_model = embedding_model
        self.reindex_stale()

    @classmethod
    def open(cls, settings: Settings, database: Database, engine: EngineClientInterface) -> Self:
        """The file system of this installation."""
        return cls(
            database,
            engine,
            BlobStore(settings.home / "fs" / "blobs"),
            master_key=load_master_key(settings),
            quota_bytes=settings.fs_quota_mb * 2**20,
            embedding_model=settings.default_embedding_model,
        )

    # --- lookups ---------------------------------------------------------------------------

    @staticmethod
    def _live(session: Session, owner: FileOwner, path: str) -> FsFile | None:
        return session.scalar(
            select(FsFile).where(
                FsFile.owner == owner.key, FsFile.path == path, FsFile.deleted.is_(False)
            )
        )

    def _resolve(
        self, session: Session, owner: FileOwner, path: str, *, deleted: bool = False
    ) -> FsFile:
        """The live file at ``path``; with ``deleted`` else the file deleted there last."""
        row = self._live(session, owner, path)
        if row is None and deleted:
            row = session.scalar(
                select(FsFile)
                .where(FsFile.owner == owner.key, FsFile.path == path)
                .order_by(FsFile.updated_at.desc(), FsFile.id.desc())
                .limit(1)
            )
        if row is None:
            raise file_not_found(path)
        return row

    @staticmethod
    def _version(session: Session, row: FsFile, number: int, path: str) -> FsVersion:
        version = session.scalar(
            select(FsVersion).where(FsVersion.file_id == row.id, FsVersion.number == number)
        )
        if version is None:
            raise NotFoundError(
                f"{path} has no version {number} (it has 1 to {row.head})",
                code="version_not_found",
            )
        return version

    def blob_path(self, digest: str) -> Path:
        path = self.blobs.path(digest)
        if not path.is_file():
            raise StorageError(f"the content {digest} is missing from {self.blobs.root}")
        return path

    def used_bytes(self, owner: FileOwner, session: Session | None = None) -> int:
        """Bytes of the distinct contents this owner's versions reference."""
        contents = (
            select(FsVersion.digest, func.max(FsVersion.size).label("size"))
            .join(FsFile, FsFile.id == FsVersion.file_id)
            .where(FsFile.owner == owner.key)
            .group_by(FsVersion.digest)
            .subquery()
        )
        statement = select(func.coalesce(func.sum(contents.c.size), 0))
        if session is not None:
            return int(session.scalar(statement) or 0)
        with self.database.session() as own:
            return int(own.scalar(statement) or 0)

    def _references(self, session: Session, owner: FileOwner, digest: str) -> bool:
        found = session.scalar(
            select(FsVersion.id)
            .join(FsFile, FsFile.id == FsVersion.file_id)
            .where(FsFile.owner == owner.key, FsVersion.digest == digest)
            .limit(1)
        )
        return found is not None

    def _space_turn(self, session: Session, owner: FileOwner) -> None:
        """Make the owner's space-adding commits take turns, first thing in the transaction,
        so two (from any processes) cannot both fit in the last free bytes. SQLite's write
        lock does this already; on PostgreSQL it is a transaction advisory lock per owner."""
        if not self.database.is_sqlite:
            key = claim_key("fs_space", owner.key)
            session.execute(select(func.pg_advisory_xact_lock(key)))

    def _check_quota(
        self, session: Session, owner: FileOwner, digest: str | None, size: int
    ) -> None:
        if digest is not None and self._references(session, owner, digest):
            return
        used = self.used_bytes(owner, session)
        if used + size > self.quota_bytes:
            raise QuotaExceededError(
                f"the file space quota is exceeded: {size} more bytes would make "
                f"{used + size} of {self.quota_bytes} (remove files and their history, or ask "
                "an admin to raise fs_quota_mb)"
            )

    # --- the version transaction ------------------------------------------------------------

    async def _prepare(self, owner: FileOwner, state: FileState) -> PreparedVersion:
        """Derive and embed the searchable texts of ``state`` (none for a deletion)."""
        if state.deleted:
            return PreparedVersion(state, None)
        summary = await asyncio.to_thread(self._summary_text, owner, state.digest)
        blob = self.blob_path(state.digest)
        data = await asyncio.to_thread(read_for_index, blob, state.size)
        derived = await asyncio.to_thread(derive, state.path, data, state.size, summary)
        state.media_type = derived.media_type
        vectors = await embed_pieces(self.engine, self.embedding_model, derived.pieces)
        return PreparedVersion(state, derived, vectors)

    def _commit(
        self,
        owner: FileOwner,
        file_id: int | None,
        expected_head: int,
        prepared: PreparedVersion,
        operation: str,
        *,
        restored_from: int | None = None,
        new_bytes: int = 0,
    ) -> VersionInfo:
        """Write one version and swap the file's index entries, in one transaction."""
        state = prepared.state
        now = datetime.now(UTC)
        with self.database.session(write=True) as session:
            if new_bytes:
                self._space_turn(session, owner)
            if file_id is None:
                if self._live(session, owner, state.path) is not None:
                    raise _Stale
                row = self._revivable(session, owner, state.path)
                if row is None:
                    row = FsFile(
                        owner=owner.key,
                        user_id=owner.user_id,
                        path=state.path,
                        deleted=True,
                        head=0,
                        digest=state.digest,
                        size=state.size,
                        media_type=state.media_type,
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(row)
                    session.flush()
            else:
                found = session.get(FsFile, file_id)
                if found is None or found.owner != owner.key or found.head != expected_head:
                    raise _Stale
                row = found
            if new_bytes:
                self._check_quota(session, owner, state.digest, new_bytes)
            row.path, row.deleted, row.digest = state.path, state.deleted, state.digest
            row.size, row.media_type = state.size, state.media_type
            row.head += 1
            row.updated_at = now
            version = FsVersion(
                file_id=row.id,
                number=row.head,
                operation=operation,
                path=state.path,
                deleted=state.deleted,
                digest=state.digest,
                size=state.size,
                media_type=state.media_type,
                restored_from=restored_from,
                created_at=now,
            )
            session.add(version)
            try:
                session.flush()
            except IntegrityError:
                raise FileExistsConflictError(f"{state.path} already exists") from None
            self._reindex(session, owner, row, prepared)
            if state.deleted:
                session.execute(delete(FsShare).where(FsShare.file_id == row.id))
            note = prepared.derived.note if prepared.derived is not None else None
            return version_info(version, note)

    @staticmethod
    def _revivable(session: Session, owner: FileOwner, path: str) -> FsFile | None:
        """The file deleted last at ``path``: writing there again continues its history."""
        return session.scalar(
            select(FsFile)
            .where(FsFile.owner == owner.key, FsFile.path == path, FsFile.deleted.is_(True))
            .order_by(FsFile.updated_at.desc(), FsFile.id.desc())
            .limit(1)
        )

    def _reindex(
        self, session: Session, owner: FileOwner, row: FsFile, prepared: PreparedVersion
    ) -> None:
        old = list(session.scalars(select(FsChunk.id).where(FsChunk.file_id == row.id)))
        self.index.remove(session, old)
        session.execute(delete(FsChunk).where(FsChunk.file_id == row.id))
        derived = prepared.derived
        if derived is None:
            return
        chunks = [
            FsChunk(file_id=row.id, kind=piece.kind, position=index, text=b"", page=piece.page)
            for index, piece in enumerate(derived.pieces)
        ]
        session.add_all(chunks)
        session.flush()
        metadata = {"type": derived.type, "size": row.size, "file": row.id}
        entries = []
        for chunk, piece, vector in zip(chunks, derived.pieces, prepared.vectors, strict=True):
            chunk.text = self.cipher.encrypt(piece.text, context=f"fs_chunk:{chunk.id}")
            entries.append(
                IndexEntry(
                    ref_id=chunk.id,
                    namespace=owner.key,
                    text=piece.text,
                    embedding=vector,
                    created_at=row.updated_at,
                    user_id=owner.user_id,
                    kind=piece.kind,
                    metadata=metadata,
                )
            )
        self.index.add(session, entries)

    async def _write_version(
        self,
        owner: FileOwner,
        load: Callable[[Session], tuple[int | None, int, FileState, int | None]],
        operation: str,
        *,
        new_bytes: int = 0,
    ) -> VersionInfo:
        """Read the file (``load`` gives its id, head, the new state and what it restores),
        prepare the new version outside any transaction, then commit it; start again if
        the file changed meanwhile."""
        for attempt in range(WRITE_ATTEMPTS):

            def read() -> tuple[int | None, int, FileState, int | None]:
                with self.database.session() as session:
                    return load(session)

            file_id, head, state, restored_from = await asyncio.to_thread(read)
            prepared = await self._prepare(owner, state)
            try:
                return await asyncio.to_thread(
                    self._commit,
                    owner,
                    file_id,
                    head,
                    prepared,
                    operation,
                    restored_from=restored_from,
                    new_bytes=new_bytes,
                )
            except _Stale:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise FileExistsConflictError(
                        f"{state.path} changed while it was being written; try again"
                    ) from None
        raise AssertionError("unreachable")

    # --- writes ----------------------------------------------------------------------------

    async def put(self, owner: FileOwner, path: str, source: Path) -> VersionInfo:
        """Store the bytes of ``source`` at ``path`` as a new version (a new file, or the
        next version of the file there)."""
        path = check_path(path)
        try:
            size = source.stat().st_size
        except OSError as error:
            raise InvalidRequestError(f"cannot read {source}: {error.strerror}") from None
        digest = await asyncio.to_thread(sha256_file, source)

        def precheck() -> None:
            with self.database.session() as session:
                self._check_quota(session, owner, digest, size)

        await asyncio.to_thread(precheck)
        _, new = await asyncio.to_thread(self.blobs.add_file, source)
        try:

            def load(session: Session) -> tuple[int | None, int, FileState, int | None]:
                row = self._live(session, owner, path)
                state = FileState(path, digest, size, "")
                return (row.id, row.head, state, None) if row else (None, 0, state, None)

            return await self._write_version(owner, load, "write", new_bytes=size)
        except BaseException:
            if new:
                await asyncio.to_thread(self._drop_if_unreferenced, digest)
            raise

    async def put_bytes(self, owner: FileOwner, path: str, data: bytes) -> VersionInfo:
        """`put` for bytes in memory (apps, tests, benchmarks)."""
        with tempfile.TemporaryDirectory(prefix="llmasos-fs-") as directory:
            source = Path(directory) / "upload"
            source.write_bytes(data)
            return await self.put(owner, path, source)

    def _drop_if_unreferenced(self, digest: str) -> None:
        with self.database.session() as session:
            used = session.scalar(select(FsVersion.id).where(FsVersion.digest == digest).limit(1))
        if used is None:
            self.blobs.remove(digest)

    async def move(self, owner: FileOwner, source: str, destination: str) -> VersionInfo:
        """Move a file; a destination that is a directory (or ends with ``/``) keeps the
        name. Moving onto a live file is refused (409)."""
        source = check_path(source, "from")
        into = destination.endswith("/")
        destination = check_path(destination, "to", directory=True)

        def load(session: Session) -> tuple[int | None, int, FileState, int | None]:
            row = self._resolve(session, owner, source)
            target = destination
            if into or destination == "/" or self._is_directory(session, owner, destination):
                target = destination.rstrip("/") + "/" + basename(source)
            if target == row.path:
                raise InvalidRequestError(f"{source} is already at {target}", param="to")
            if self._live(session, owner, target) is not None:
                raise FileExistsConflictError(
                    f"{target} already exists; remove it first or choose another name"
                )
            return row.id, row.head, FileState(target, row.digest, row.size, row.media_type), None

        return await self._write_version(owner, load, "move")

    async def delete(self, owner: FileOwner, path: str) -> VersionInfo:
        """Delete a file: a new version marked deleted (rollback brings it back)."""
        path = check_path(path)

        def load(session: Session) -> tuple[int | None, int, FileState, int | None]:
            row = self._resolve(session, owner, path)
            state = FileState(row.path, row.digest, row.size, row.media_type, deleted=True)
            return row.id, row.head, state, None

        return await self._write_version(owner, load, "delete")

    async def rollback(self, owner: FileOwner, path: str, to: int | None = None) -> VersionInfo:
        """Restore the state of version ``to`` (default: the one before the newest) as a
        new version: its content, its path, and whether it existed."""
        path = check_path(path)

        def load(session: Session) -> tuple[int | None, int, FileState, int | None]:
            row = self._resolve(session, owner, path, deleted=True)
            target = row.head - 1 if to is None else to
            if row.head == 1 and to is None:
                raise InvalidRequestError(
                    f"{path} has only one version: there is nothing to roll back to"
                )
            if target == row.head:
                raise InvalidRequestError(f"{path} is at version {target} already", param="to")
            if target < 1:
                raise InvalidRequestError("to: versions start at 1", param="to")
            old = self._version(session, row, target, path)
            if old.path != row.path and self._live(session, owner, old.path) is not None:
                raise FileExistsConflictError(
                    f"version {target} was at {old.path}, where another file is now; move "
                    "that one first"
                )
            state = FileState(old.path, old.digest, old.size, old.media_type, deleted=old.deleted)
            return row.id, row.head, state, target

        return await self._write_version(owner, load, "rollback")

    def _is_directory(self, session: Session, owner: FileOwner, path: str) -> bool:
        prefix = path.rstrip("/") + "/"
        found = session.scalar(
            select(FsFile.id)
            .where(
                FsFile.owner == owner.key,
                FsFile.deleted.is_(False),
                func.substr(FsFile.path, 1, len(prefix)) == prefix,
            )
            .limit(1)
        )
        return found is not None

    def _summary_text(self, owner: FileOwner, digest: str) -> str | None:
        with self.database.session() as session:
            row = session.scalar(
                select(FsSummary).where(FsSummary.owner == owner.key, FsSummary.digest == digest)
            )
            if row is None:
                return None
            return self.cipher.decrypt_text(row.text, context=f"fs_summary:{row.id}")

    def reindex_stale(self) -> int:
        """Re-blind the index terms of chunks indexed under an older master key (after
        ``keys rotate-master``); embeddings are kept. Returns how many."""
        return reindex_stale(self.database, self.index, self.cipher)


def reindex_stale(database: Database, index: HybridIndex, cipher: ContentCipher) -> int:
    """See `FileSystem.reindex_stale`; usable without a kernel (``keys rotate-master``)."""
    with database.session(write=True) as session:

        def texts_of(ids: list[int]) -> Iterator[tuple[int, str]]:
            for chunk in session.scalars(select(FsChunk).where(FsChunk.id.in_(ids))):
                yield chunk.id, cipher.decrypt_text(chunk.text, context=f"fs_chunk:{chunk.id}")

        return index.reblind_stale(session, texts_of)
