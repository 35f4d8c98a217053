"""Uploaded files, owned per user: bytes in a content-addressed blob store, a row each.

`FileStore.begin_upload` gives an `Upload` that the caller feeds chunk by chunk (an HTTP
body as it streams in, a local file); it hashes while writing a temp file beside the blobs
and raises `FileTooLargeError` (413) the moment the size passes the limit, so a 1 GB body is
never read whole. `Upload.finish` moves the temp file into place as the blob and writes the
row. Equal bytes share one blob; the blob is removed when the last file naming it is
deleted. Every read and write names the owner (a user id, None for the machine's owner with
authentication off); another owner's file is "not found", so ids leak nothing. Filenames
are display names only (the blob is named by its digest): directories are stripped, and NUL
or control characters are refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from llmasos.models.blobs import TEMP_PREFIX, BlobStore, storage_error
from llmasos.storage.database import Database
from llmasos.storage.ids import new_id
from llmasos.storage.schema import KnowledgeFile, owned_by

PURPOSES: Final = ("assistants", "user_data", "batch", "fine-tune", "vision", "evals")
"""OpenAI's file purposes; any of them may be attached to a vector store."""
MAX_FILENAME_CHARS: Final = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_FILE_ID = re.compile(r"file-[0-9a-f]{24}")


class FileTooLargeError(PayloadTooLargeError):
    """An upload past the configured size limit."""

    default_code = "file_too_large"


def keyset_page(statement: Any, model: Any, cursor: Any, order: str) -> Any:
    """``statement`` ordered by ``(created_at, id)`` (``asc`` or newest first), after the
    row ``cursor`` when one is given: a keyset page."""
    if cursor is not None:
        at, key = model.created_at, (cursor.created_at, cursor.id)
        if order == "asc":
            statement = statement.where((at > key[0]) | ((at == key[0]) & (model.id > key[1])))
        else:
            statement = statement.where((at < key[0]) | ((at == key[0]) & (model.id < key[1])))
    if order == "asc":
        return statement.order_by(model.created_at, model.id)
    return statement.order_by(model.created_at.desc(), model.id.desc())


def clean_filename(name: str | None) -> str:
    """The display name of an upload: its last path component, checked."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequestError("file: the upload has no filename", param="file")
    if _CONTROL.search(name):
        raise InvalidRequestError(
            "file: the filename contains NUL or control characters", param="file"
        )
    base = re.split(r"[\\/]", name.strip())[-1].strip()
    if base in ("", ".", ".."):
        raise InvalidRequestError(f"file: {name[:80]!r} is not a file name", param="file")
    if len(base) > MAX_FILENAME_CHARS:
        raise InvalidRequestError(
            f"file: the filename has {len(base)} characters; at most {MAX_FILENAME_CHARS}",
            param="file",
        )
    return base


def check_purpose(purpose: Any) -> str:
    if purpose not in PURPOSES:
        raise InvalidRequestError(
            f"purpose: {str(purpose)[:40]!r} is not one of {', '.join(PURPOSES)}",
            param="purpose",
        )
    return str(purpose)


@dataclass(frozen=True)
class FileInfo:
    """One file as the API shows it (OpenAI's file object)."""

    id: str
    filename: str
    purpose: str
    bytes: int
    digest: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at.timestamp()),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


def file_info(row: KnowledgeFile) -> FileInfo:
    return FileInfo(row.id, row.filename, row.purpose, row.bytes, row.digest, row.created_at)


class Upload:
    """One upload in progress: `write` chunks, then `finish` (or `discard`)."""

    def __init__(self, store: FileStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self.size = 0
        self._hasher = hashlib.sha256()
        try:
            store.blobs.root.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=store.blobs.root)
        except OSError as error:
            raise storage_error(error, f"write to {store.blobs.root}") from None
        self.path = Path(name)
        self._handle = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.discard()
            raise FileTooLargeError(
                f"file: larger than the upload limit of {self.limit} bytes "
                "(setting max_upload_bytes)",
                param="file",
            )
        self._hasher.update(data)
        try:
            self._handle.write(data)
        except OSError as error:
            self.discard()
            raise storage_error(error, "write the upload") from None

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        self.path.unlink(missing_ok=True)

    def finish(self, user_id: int | None, filename: str, purpose: str) -> FileInfo:
        """Store the bytes as a blob and record the file (the temp file is consumed)."""
        try:
            filename, purpose = clean_filename(filename), check_purpose(purpose)
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        except OSError as error:
            self.discard()
            raise storage_error(error, "write the upload") from None
        except BaseException:
            self.discard()
            raise
        digest = f"sha256:{self._hasher.hexdigest()}"
        self.store.blobs.adopt(self.path, digest)
        row = KnowledgeFile(
            id=new_id("file", separator="-"),
            user_id=user_id,
            filename=filename,
            purpose=purpose,
            bytes=self.size,
            digest=digest,
            created_at=datetime.now(UTC),
        )
        with self.store.database.session(write=True) as session:
            session.add(row)
            session.flush()
            return file_info(row)


class FileStore:
    """Every owner's files in one database and one blob directory."""

    def __init__(self, database: Database, root: Path, *, max_upload_bytes: int) -> None:
        self.database = database
        self.blobs = BlobStore(root)
        self.max_upload_bytes = max_upload_bytes

    @classmethod
    def open(cls, settings: Settings, database: Database) -> FileStore:
        return cls(
            database,
            settings.home / "files" / "blobs",
            max_upload_bytes=settings.max_upload_bytes,
        )

    def check_size(self, size: int) -> None:
        """Refuse (413) a size past the limit: call it with a declared size before reading."""
        if size > self.max_upload_bytes:
            raise FileTooLargeError(
                f"file: {size} bytes is larger than the upload limit of "
                f"{self.max_upload_bytes} bytes (setting max_upload_bytes)",
                param="file",
            )

    def begin_upload(self) -> Upload:
        """Start an upload; `Upload.write` refuses (413) past the limit."""
        return Upload(self, self.max_upload_bytes)

    def add_bytes(self, user_id: int | None, filename: str, data: bytes, purpose: str) -> FileInfo:
        """Upload from memory (tests, small files)."""
        self.check_size(len(data))
        upload = self.begin_upload()
        upload.write(data)
        return upload.finish(user_id, filename, purpose)

    def _row(self, session: Session, user_id: int | None, file_id: str) -> KnowledgeFile:
        row = session.get(KnowledgeFile, file_id) if _FILE_ID.fullmatch(file_id) else None
        if row is None or row.user_id != user_id:
            raise NotFoundError(f"no file {file_id[:80]!r}", code="file_not_found")
        return row

    def get(self, user_id: int | None, file_id: str) -> FileInfo:
        with self.database.session() as session:
            return file_info(self._row(session, user_id, file_id))

    def content_path(self, user_id: int | None, file_id: str) -> tuple[FileInfo, Path]:
        """The file and the path of its bytes (read-only)."""
        info = self.get(user_id, file_id)
        path = self.blobs.path(info.digest)
        if not path.is_file():
            raise NotFoundError(
                f"the content of {file_id} is missing from {self.blobs.root}",
                code="file_content_missing",
            )
        return info, path

    def read(self, user_id: int | None, file_id: str) -> tuple[FileInfo, bytes]:
        info, path = self.content_path(user_id, file_id)
        return info, path.read_bytes()

    def list_files(
        self,
        user_id: int | None,
        *,
        purpose: str | None = None,
        limit: int = 100,
        after: str | None = None,
        order: str = "desc",
    ) -> list[FileInfo]:
        """Files newest first (``order="asc"``: oldest first); ``after`` continues a page."""
        statement = select(KnowledgeFile).where(owned_by(KnowledgeFile.user_id, user_id))
        if purpose is not None:
            statement = statement.where(KnowledgeFile.purpose == check_purpose(purpose))
        with self.database.session() as session:
            cursor = self._row(session, user_id, after) if after is not None else None
            statement = keyset_page(statement, KnowledgeFile, cursor, order)
            rows = session.scalars(statement.limit(max(1, min(limit, 10_000))))
            return [file_info(row) for row in rows]

    def delete(
        self,
        user_id: int | None,
        file_id: str,
        *,
        before: Callable[[Session, str], None] | None = None,
    ) -> None:
        """Delete a file (``before`` runs first in the same transaction: the vector stores
        drop its chunks from the index there) and its blob when no other file has the
        same bytes."""
        with self.database.session(write=True) as session:
            row = self._row(session, user_id, file_id)
            digest = row.digest
            if before is not None:
                before(session, file_id)
            session.delete(row)
            session.flush()
            shared = session.scalar(
                select(func.count())
                .select_from(KnowledgeFile)
                .where(KnowledgeFile.digest == digest)
            )
        if not shared:
            self.blobs.remove(digest)
