"""Content-addressed blob files and atomic writes for the model store.

Blobs live in ``blobs/sha256-<hex>`` and are written only through a temp file in the same
directory followed by ``os.replace``, so a reader sees a whole blob or none. Any ``OSError``
from the disk (full, read-only, permission denied) becomes `StorageError` after the temp
file is removed. `Transaction` records what an operation added so a failure can undo it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from llmasos.errors import StorageError
from llmasos.models.manifest import BlobRef

CHUNK = 1 << 20
TEMP_PREFIX = ".tmp-"

ProgressFn = Callable[[int], None]


def write_chunk(handle: BinaryIO, data: bytes) -> None:
    """Write one chunk (a module function so tests can simulate a full disk)."""
    handle.write(data)


def storage_error(error: OSError, action: str) -> StorageError:
    """A one-line `StorageError` for a failed disk operation."""
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "the file system is read-only",
    }
    reason = reasons.get(error.errno or 0, error.strerror or str(error))
    where = f" ({error.filename})" if error.filename else ""
    return StorageError(f"cannot {action}: {reason}{where}")


def digest_to_filename(digest: str) -> str:
    """``sha256:abc`` -> ``sha256-abc``."""
    return digest.replace(":", "-", 1)


def sha256_file(path: Path, progress: ProgressFn | None = None) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            hasher.update(chunk)
            if progress:
                progress(len(chunk))
    return f"sha256:{hasher.hexdigest()}"


@contextlib.contextmanager
def atomic_file(destination: Path) -> Iterator[BinaryIO]:
    """Yield a temp file next to ``destination``; on success fsync and ``os.replace`` it."""
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=destination.parent)
    except OSError as error:
        raise storage_error(error, f"write {destination}") from None
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, destination)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise storage_error(error, f"write {destination}") from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_text_atomic(destination: Path, text: str) -> None:
    """Replace ``destination`` with ``text`` atomically."""
    with atomic_file(destination) as handle:
        write_chunk(handle, text.encode())


class BlobStore:
    """The ``blobs/`` directory: add files by content, look them up, delete them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest_to_filename(digest)

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def add_file(
        self, source: Path, *, link: bool = False, progress: ProgressFn | None = None
    ) -> tuple[BlobRef, bool]:
        """Store a copy of ``source`` (a hard link if ``link`` and possible).

        Returns the blob (with an empty ``path``) and whether it was new. The copy is hashed
        while it is written, so the file is read once.
        """
        try:
            size = source.stat().st_size
        except OSError as error:
            raise storage_error(error, f"read {source}") from None
        if link:
            digest = sha256_file(source, progress)
            if self.has(digest):
                return BlobRef("", digest, size), False
            with contextlib.suppress(OSError):
                self._link_in(source, digest)
                return BlobRef("", digest, size), True
            return self._copy_in(source, size, None)
        return self._copy_in(source, size, progress)

    def _link_in(self, source: Path, digest: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        temp = self.root / f"{TEMP_PREFIX}{digest_to_filename(digest)}-{os.getpid()}"
        temp.unlink(missing_ok=True)
        os.link(source, temp)
        try:
            os.replace(temp, self.path(digest))
        except OSError:
            temp.unlink(missing_ok=True)
            raise

    def _copy_in(
        self, source: Path, size: int, progress: ProgressFn | None
    ) -> tuple[BlobRef, bool]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.root)
        except OSError as error:
            raise storage_error(error, f"write to {self.root}") from None
        temp = Path(temp_name)
        hasher = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    hasher.update(chunk)
                    write_chunk(out, chunk)
                    if progress:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            digest = f"sha256:{hasher.hexdigest()}"
            if self.has(digest):
                temp.unlink()
                return BlobRef("", digest, size), False
            os.chmod(temp, 0o444)
            os.replace(temp, self.path(digest))
            return BlobRef("", digest, size), True
        except OSError as error:
            temp.unlink(missing_ok=True)
            raise storage_error(error, f"copy {source} into the store") from None
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def adopt(self, temp: Path, digest: str) -> bool:
        """Move a verified download into place; False if the blob already existed."""
        if self.has(digest):
            temp.unlink(missing_ok=True)
            return False
        try:
            os.chmod(temp, 0o444)
            os.replace(temp, self.path(digest))
        except OSError as error:
            raise storage_error(error, f"write {self.path(digest)}") from None
        return True

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def digests(self) -> set[str]:
        if not self.root.is_dir():
            return set()
        return {
            p.name.replace("-", ":", 1)
            for p in self.root.iterdir()
            if p.name.startswith("sha256-") and p.is_file() and not p.name.endswith(".partial")
        }


class Transaction:
    """Remembers blobs and files an operation created, to delete them if it fails."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.new_blobs: list[str] = []
        self.new_paths: list[Path] = []

    def added(self, digest: str, new: bool) -> None:
        if new:
            self.new_blobs.append(digest)

    def rollback(self) -> None:
        for digest in self.new_blobs:
            with contextlib.suppress(OSError):
                self.blobs.remove(digest)
        for path in reversed(self.new_paths):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
