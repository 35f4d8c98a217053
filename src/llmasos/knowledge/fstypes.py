"""The values the semantic file system hands out, and its errors.

`VersionInfo` is a file's state after one version; `DirEntry` a line of a listing;
`FindHit` one file that matched a query (its best chunk's snippet); `FindFilters` the
metadata a match must meet; `SummaryResult` and `ShareInfo` what ``summarize`` and
``share`` return. Each has ``to_dict`` (timestamps as unix seconds), which is the HTTP
API's JSON and the CLI's ``--json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from llmasos.errors import LLMasOSError, NotFoundError
from llmasos.retrieval.interface import SearchFilters


class QuotaExceededError(LLMasOSError):
    """A write would take an owner's file space past its quota (HTTP 507)."""

    status_code = 507
    error_type = "insufficient_storage"
    default_code = "fs_quota_exceeded"


class FileExistsConflictError(LLMasOSError):
    """The destination of a move or rollback already holds a live file (HTTP 409)."""

    status_code = 409
    error_type = "invalid_request_error"
    default_code = "file_exists"


def file_not_found(path: str, version: int | None = None) -> NotFoundError:
    what = f"{path}@{version}" if version is not None else path
    return NotFoundError(f"no file {what[:1100]}", code="file_not_found")


@dataclass(frozen=True)
class FileOwner:
    """Whose files: a user, or the local owner (authentication off)."""

    key: str
    user_id: int | None

    @classmethod
    def for_user(cls, user_id: int | None) -> FileOwner:
        return cls("local", None) if user_id is None else cls(f"user:{user_id}", user_id)


def _ts(value: datetime) -> int:
    return int(value.timestamp())


@dataclass(frozen=True)
class VersionInfo:
    """A file's state after one version (the current state when it is the newest)."""

    path: str
    version: int
    operation: str
    deleted: bool
    digest: str
    size: int
    media_type: str
    type: str
    modified_at: datetime
    restored_from: int | None = None
    note: str | None = None
    """For a write: why the content is not searchable, when it is not."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "object": "fs.version",
            "path": self.path,
            "version": self.version,
            "operation": self.operation,
            "deleted": self.deleted,
            "digest": self.digest,
            "size": self.size,
            "media_type": self.media_type,
            "type": self.type,
            "modified_at": _ts(self.modified_at),
            "restored_from": self.restored_from,
            "note": self.note,
        }
        return data


@dataclass(frozen=True)
class DirEntry:
    name: str
    path: str
    kind: str
    """``file`` or ``directory``."""
    size: int
    modified_at: datetime
    version: int | None = None
    type: str | None = None
    files: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "fs.entry",
            "name": self.name,
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "modified_at": _ts(self.modified_at),
            "version": self.version,
            "type": self.type,
            "files": self.files,
        }


@dataclass(frozen=True)
class FindFilters:
    """Metadata every `find` result must meet; None means any."""

    type: str | None = None
    min_size: int | None = None
    max_size: int | None = None
    modified_after: datetime | None = None
    modified_before: datetime | None = None

    def search_filters(self) -> SearchFilters:
        ranges: dict[str, tuple[float | None, float | None]] = {}
        if self.min_size is not None or self.max_size is not None:
            ranges["size"] = (self.min_size, self.max_size)
        return SearchFilters(
            since=self.modified_after,
            until=self.modified_before,
            metadata={"type": self.type} if self.type else {},
            ranges=ranges,
        )


@dataclass(frozen=True)
class FindHit:
    path: str
    score: float
    version: int
    type: str
    size: int
    modified_at: datetime
    matched: str
    """What matched best: ``name``, ``content`` or ``summary``."""
    snippet: str
    page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "fs.match",
            "path": self.path,
            "score": round(self.score, 6),
            "version": self.version,
            "type": self.type,
            "size": self.size,
            "modified_at": _ts(self.modified_at),
            "matched": self.matched,
            "snippet": self.snippet,
            "page": self.page,
        }


@dataclass(frozen=True)
class SummaryResult:
    path: str
    summary: str
    model: str
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "fs.summary",
            "path": self.path,
            "summary": self.summary,
            "model": self.model,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class ShareInfo:
    id: str
    path: str
    created_at: datetime
    token: str | None = None
    """Only when the share is created: it is not stored, only its hash."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "object": "fs.share",
            "id": self.id,
            "path": self.path,
            "created_at": _ts(self.created_at),
        }
        if self.token is not None:
            data["token"] = self.token
        return data


def short_type(media_type: str) -> str:
    """The short name of a type the converter reads (txt, md ...), else ``binary``."""
    from llmasos.knowledge.convert import SUPPORTED_MEDIA_TYPES

    return SUPPORTED_MEDIA_TYPES.get(media_type, "binary")
