"""The semantic file system: each user's versioned files, found by meaning.

`FileSystem` is `llmasos.knowledge.fsversions.VersionStore` (versions and the transaction
that keeps the index in step) plus reads, listings, diffs, `find`, summaries and share
links. It keeps every owner's files as rows of ``fs_files`` (a file's identity, which
follows it across moves) and ``fs_versions`` (one row per write, move, delete and rollback:
the path, the content digest, size and type after it). Contents live once in a
content-addressed `BlobStore` (``$LLMASOS_HOME/fs/blobs``), so a version that does not
change the bytes copies nothing. The searchable texts of each file's *current* version
(`llmasos.knowledge.fsindex`) are ``fs_chunks`` rows indexed in the shared hybrid index
(collection ``fs``, one namespace per owner), and they are replaced in the same database
transaction as the version row: `find` never answers from a version that is not current,
after a rollback included. Each owner's distinct contents (every version's, once each)
count against a quota; a write past it is refused with 507 before anything is stored.
Another owner's paths are simply not found (404).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select

from llmasos.config import Settings
from llmasos.errors import (
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from llmasos.knowledge.fsindex import (
    derive,
    read_for_index,
)
from llmasos.knowledge.fspaths import basename, check_path
from llmasos.knowledge.fstypes import (
    DirEntry,
    FileExistsConflictError,
    FileOwner,
    FindFilters,
    FindHit,
    QuotaExceededError,
    ShareInfo,
    SummaryResult,
    VersionInfo,
    short_type,
)
from llmasos.knowledge.fsversions import (
    COLLECTION,
    FileState,
    PreparedVersion,
    VersionStore,
    reindex_stale,
    version_info,
)
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import RetrievalMode, SearchFilters
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.crypto import ContentCipher, load_master_key
from llmasos.storage.database import Database
from llmasos.storage.schema import FsChunk, FsFile, FsShare, FsSummary, FsVersion

MAX_FIND_K: Final = 50
MAX_QUERY_CHARS: Final = 2000
MAX_DIFF_BYTES: Final = 4 * 2**20
SNIPPET_CHARS: Final = 240
MIN_SIMILARITY: Final = 0.2
"""A file matched only by meaning must be at least this close (cosine) to be a result:
the vector side ranks every file, related or not."""
SHARE_PREFIX: Final = "fsh_"


Summarizer = Callable[[str], Awaitable[tuple[str, str]]]
"""Text -> (summary, model name): the ``summarize`` service, run by the caller's layer."""


class FileSystem(VersionStore):
    """Every owner's file space in one database and one blob directory."""

    # --- reads -----------------------------------------------------------------------------

    def stat(self, owner: FileOwner, path: str, version: int | None = None) -> VersionInfo:
        """A file's current state, or one version's (deleted files: by version only)."""
        path = check_path(path)
        with self.database.session() as session:
            row = self._resolve(session, owner, path, deleted=version is not None)
            return version_info(self._version(session, row, version or row.head, path))

    def open_content(
        self, owner: FileOwner, path: str, version: int | None = None
    ) -> tuple[VersionInfo, Path]:
        """A version's state and the blob file that holds its bytes."""
        info = self.stat(owner, path, version)
        if info.deleted:
            raise NotFoundError(
                f"version {info.version} of {path} is its deletion; read an earlier one",
                code="file_not_found",
            )
        return info, self.blob_path(info.digest)

    def read(self, owner: FileOwner, path: str, version: int | None = None) -> bytes:
        return self.open_content(owner, path, version)[1].read_bytes()

    def list_dir(self, owner: FileOwner, path: str = "/") -> list[DirEntry]:
        """The files and directories directly in ``path`` (or the file ``path`` itself)."""
        path = check_path(path, directory=True)
        prefix = path.rstrip("/") + "/"
        with self.database.session() as session:
            live = self._live(session, owner, path) if path != "/" else None
            if live is not None:
                return [self._file_entry(live)]
            rows = list(
                session.scalars(
                    select(FsFile)
                    .where(
                        FsFile.owner == owner.key,
                        FsFile.deleted.is_(False),
                        func.substr(FsFile.path, 1, len(prefix)) == prefix,
                    )
                    .order_by(FsFile.path)
                )
            )
        if not rows and path != "/":
            raise NotFoundError(f"no file or directory {path}", code="file_not_found")
        files: list[DirEntry] = []
        directories: dict[str, DirEntry] = {}
        for row in rows:
            rest = row.path[len(prefix) :]
            if "/" not in rest:
                files.append(self._file_entry(row))
                continue
            name = rest.split("/", 1)[0]
            seen = directories.get(name)
            directories[name] = DirEntry(
                name=name,
                path=prefix + name,
                kind="directory",
                size=(seen.size if seen else 0) + row.size,
                modified_at=max(seen.modified_at, row.updated_at) if seen else row.updated_at,
                files=(seen.files if seen else 0) + 1,
            )
        return sorted(directories.values(), key=lambda e: e.name) + files

    @staticmethod
    def _file_entry(row: FsFile) -> DirEntry:
        return DirEntry(
            name=basename(row.path),
            path=row.path,
            kind="file",
            size=row.size,
            modified_at=row.updated_at,
            version=row.head,
            type=short_type(row.media_type),
        )

    def all_paths(self, owner: FileOwner, limit: int = 1000) -> list[str]:
        """The paths of the owner's live files, most recently changed first."""
        with self.database.session() as session:
            return list(
                session.scalars(
                    select(FsFile.path)
                    .where(FsFile.owner == owner.key, FsFile.deleted.is_(False))
                    .order_by(FsFile.updated_at.desc(), FsFile.id.desc())
                    .limit(limit)
                )
            )

    def history(self, owner: FileOwner, path: str) -> list[VersionInfo]:
        """Every version of the file at ``path`` (or deleted there last), newest first."""
        path = check_path(path)
        with self.database.session() as session:
            row = self._resolve(session, owner, path, deleted=True)
            versions = session.scalars(
                select(FsVersion)
                .where(FsVersion.file_id == row.id)
                .order_by(FsVersion.number.desc())
            )
            return [version_info(v) for v in versions]

    def diff(self, owner: FileOwner, path: str, first: int, second: int) -> dict[str, Any]:
        """A unified diff of two versions' texts; for other contents, whether they differ."""
        path = check_path(path)
        with self.database.session() as session:
            row = self._resolve(session, owner, path, deleted=True)
            a = version_info(self._version(session, row, first, path))
            b = version_info(self._version(session, row, second, path))
        result: dict[str, Any] = {
            "object": "fs.diff",
            "path": path,
            "from": a.to_dict(),
            "to": b.to_dict(),
            "identical": a.digest == b.digest and a.deleted == b.deleted,
            "binary": False,
            "diff": "",
        }
        if a.digest == b.digest:
            return result
        if max(a.size, b.size) > MAX_DIFF_BYTES:
            raise PayloadTooLargeError(
                f"{path}: versions over {MAX_DIFF_BYTES} bytes are not diffed; compare their "
                "digests instead"
            )
        texts = [self._diff_text(v) for v in (a, b)]
        if texts[0] is None or texts[1] is None:
            result["binary"] = True
            return result
        lines = difflib.unified_diff(
            texts[0].splitlines(keepends=True),
            texts[1].splitlines(keepends=True),
            fromfile=f"{a.path}@{a.version}",
            tofile=f"{b.path}@{b.version}",
        )
        result["diff"] = "".join(lines)
        return result

    def _diff_text(self, version: VersionInfo) -> str | None:
        if version.deleted:
            return ""
        data = self.blob_path(version.digest).read_bytes()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        from llmasos.knowledge.convert import convert

        try:
            return convert(data, basename(version.path)).text
        except InvalidRequestError:
            return None

    # --- find ------------------------------------------------------------------------------

    async def find(
        self,
        owner: FileOwner,
        query: str,
        *,
        k: int = 10,
        filters: FindFilters | None = None,
        mode: RetrievalMode = "hybrid",
        min_similarity: float = MIN_SIMILARITY,
    ) -> list[FindHit]:
        """The ``k`` files that best match ``query`` by name, content or summary, best
        first: one hit per file, with the best chunk's snippet."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestError("query: must be non-empty text", param="query")
        if len(query) > MAX_QUERY_CHARS:
            raise PayloadTooLargeError(
                f"query: {len(query)} characters; at most {MAX_QUERY_CHARS}", param="query"
            )
        if not 1 <= k <= MAX_FIND_K:
            raise InvalidRequestError(f"k: must be between 1 and {MAX_FIND_K}", param="k")
        search_filters = (filters or FindFilters()).search_filters()
        vector = (
            None
            if mode == "bm25"
            else (await self.engine.embed(self.embedding_model, [query])).vectors[0]
        )
        return await asyncio.to_thread(
            self._find, owner, query, vector, k, search_filters, mode, min_similarity
        )

    def _find(
        self,
        owner: FileOwner,
        query: str,
        vector: Sequence[float] | None,
        k: int,
        filters: SearchFilters,
        mode: RetrievalMode,
        min_similarity: float,
    ) -> list[FindHit]:
        hits = [
            hit
            for hit in self.index.search(
                owner.key, query, vector, k=k * 8, filters=filters, mode=mode
            )
            if hit.bm25_rank is not None or (hit.similarity or 0.0) >= min_similarity
        ]
        if not hits:
            return []
        with self.database.session() as session:
            rows = session.execute(
                select(FsChunk, FsFile)
                .join(FsFile, FsFile.id == FsChunk.file_id)
                .where(
                    FsChunk.id.in_([h.ref_id for h in hits]),
                    FsFile.owner == owner.key,
                    FsFile.deleted.is_(False),
                )
            ).all()
        chunks = {chunk.id: (chunk, file) for chunk, file in rows}
        best: dict[int, FindHit] = {}
        text_for: dict[int, tuple[str, int | None]] = {}
        order: list[int] = []
        for hit in hits:
            found = chunks.get(hit.ref_id)
            if found is None:
                continue
            chunk, file = found
            if chunk.kind != "name" and file.id not in text_for:
                text = self.cipher.decrypt_text(chunk.text, context=f"fs_chunk:{chunk.id}")
                text_for[file.id] = (text, chunk.page)
            if file.id in best:
                continue
            order.append(file.id)
            best[file.id] = FindHit(
                path=file.path,
                score=hit.score,
                version=file.head,
                type=short_type(file.media_type),
                size=file.size,
                modified_at=file.updated_at,
                matched=chunk.kind,
                snippet="",
            )
        results = []
        for file_id in order[:k]:
            match = best[file_id]
            text, page = text_for.get(file_id, ("", None))
            snippet = " ".join(text.split())
            if len(snippet) > SNIPPET_CHARS:
                snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
            results.append(replace(match, snippet=snippet, page=page))
        return results

    # --- summaries -------------------------------------------------------------------------

    def document_text(self, owner: FileOwner, path: str) -> tuple[VersionInfo, str]:
        """A live file's extracted text (400 for a file that has none)."""
        info, blob = self.open_content(owner, path)
        data = read_for_index(blob, info.size)
        derived = derive(info.path, data, info.size, None)
        if derived.text is None or not derived.text.strip():
            raise InvalidRequestError(
                f"{info.path} has no text to read ({derived.note or 'empty'})", param="paths"
            )
        return info, derived.text

    async def summarize(
        self,
        owner: FileOwner,
        paths: Sequence[str],
        summarizer: Summarizer,
        *,
        refresh: bool = False,
    ) -> list[SummaryResult]:
        """Summarize each file (kept per content: asking again is free unless ``refresh``),
        and index the summary with the file so `find` matches it."""
        if not paths:
            raise InvalidRequestError("paths: name at least one file", param="paths")
        checked = [check_path(p, "paths") for p in paths]
        results = []
        for path in checked:
            info, text = await asyncio.to_thread(self.document_text, owner, path)
            cached = (
                None if refresh else await asyncio.to_thread(self._summary_text, owner, info.digest)
            )
            if cached is not None:
                results.append(SummaryResult(info.path, cached, "", cached=True))
                continue
            summary, model = await summarizer(text)
            await asyncio.to_thread(self._store_summary, owner, info.digest, summary, model)
            await self._reindex_content(owner, info.digest)
            results.append(SummaryResult(info.path, summary, model, cached=False))
        return results

    def _store_summary(self, owner: FileOwner, digest: str, summary: str, model: str) -> None:
        with self.database.session(write=True) as session:
            row = session.scalar(
                select(FsSummary).where(FsSummary.owner == owner.key, FsSummary.digest == digest)
            )
            if row is None:
                row = FsSummary(
                    owner=owner.key, user_id=owner.user_id, digest=digest, text=b"", model=model
                )
                session.add(row)
                session.flush()
            row.model = model
            row.created_at = datetime.now(UTC)
            row.text = self.cipher.encrypt(summary, context=f"fs_summary:{row.id}")

    async def _reindex_content(self, owner: FileOwner, digest: str) -> None:
        """Re-derive the index of every live file holding ``digest`` (its summary changed);
        the version stays the same."""
        with self.database.session() as session:
            files = list(
                session.execute(
                    select(
                        FsFile.id, FsFile.head, FsFile.path, FsFile.size, FsFile.media_type
                    ).where(
                        FsFile.owner == owner.key,
                        FsFile.digest == digest,
                        FsFile.deleted.is_(False),
                    )
                ).all()
            )
        for file_id, head, path, size, media_type in files:
            prepared = await self._prepare(owner, FileState(path, digest, size, media_type))

            def write(
                file_id: int = file_id, head: int = head, prepared: PreparedVersion = prepared
            ) -> None:
                with self.database.session(write=True) as session:
                    row = session.get(FsFile, file_id)
                    if row is None or row.head != head:
                        return  # a newer version was indexed meanwhile
                    self._reindex(session, owner, row, prepared)

            await asyncio.to_thread(write)

    # --- shares ----------------------------------------------------------------------------

    def share(self, owner: FileOwner, path: str) -> ShareInfo:
        """A read-only link to a live file; the token is returned once."""
        path = check_path(path)
        token = SHARE_PREFIX + secrets.token_urlsafe(24)
        now = datetime.now(UTC)
        with self.database.session(write=True) as session:
            row = self._resolve(session, owner, path)
            share = FsShare(
                id="share_" + secrets.token_hex(8),
                token_hash=hashlib.sha256(token.encode()).hexdigest(),
                file_id=row.id,
                owner=owner.key,
                created_at=now,
            )
            session.add(share)
            return ShareInfo(share.id, row.path, now, token)

    def shares(self, owner: FileOwner) -> list[ShareInfo]:
        with self.database.session() as session:
            rows = session.execute(
                select(FsShare, FsFile.path)
                .join(FsFile, FsFile.id == FsShare.file_id)
                .where(FsShare.owner == owner.key)
                .order_by(FsShare.created_at)
            ).all()
            return [ShareInfo(s.id, p, s.created_at) for s, p in rows]

    def unshare(self, owner: FileOwner, share_id: str) -> None:
        with self.database.session(write=True) as session:
            share = session.get(FsShare, share_id)
            if share is None or share.owner != owner.key:
                raise NotFoundError(f"no share {share_id[:80]!r}", code="share_not_found")
            session.delete(share)

    def open_shared(self, token: str) -> tuple[VersionInfo, Path]:
        """The current version of the file a share token names (404 for any bad token)."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        with self.database.session() as session:
            found = session.execute(
                select(FsShare, FsFile)
                .join(FsFile, FsFile.id == FsShare.file_id)
                .where(FsShare.token_hash == digest)
            ).first()
            if found is None or found[1].deleted:
                raise NotFoundError(
                    "no such share (revoked, or its file was deleted)", code="share_not_found"
                )
            row = found[1]
            info = version_info(self._version(session, row, row.head, row.path))
        return info, self.blob_path(info.digest)

    # --- maintenance -----------------------------------------------------------------------

    def usage(self, owner: FileOwner) -> dict[str, Any]:
        with self.database.session() as session:
            files = session.scalar(
                select(func.count())
                .select_from(FsFile)
                .where(FsFile.owner == owner.key, FsFile.deleted.is_(False))
            )
            used = self.used_bytes(owner, session)
        return {
            "object": "fs.usage",
            "files": int(files or 0),
            "used_bytes": used,
            "quota_bytes": self.quota_bytes,
        }


def reindex_after_rotation(settings: Settings, database: Database) -> int:
    """Bring the file index under the current master key; how many chunks were redone."""
    key = load_master_key(settings)
    index = HybridIndex(database, COLLECTION, TermBlinder(key))
    return reindex_stale(database, index, ContentCipher(key))


__all__ = [
    "COLLECTION",
    "DirEntry",
    "FileExistsConflictError",
    "FileOwner",
    "FileSystem",
    "FindFilters",
    "FindHit",
    "QuotaExceededError",
    "ShareInfo",
    "SummaryResult",
    "VersionInfo",
]
