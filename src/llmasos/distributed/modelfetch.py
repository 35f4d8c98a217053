"""Getting a model's weights onto a cluster node, by digest, verified by sha256.

A replica needs the GGUF file its manifest names. It looks, in order, in its node's cache
(``<cache>/blobs/sha256-<hex>``), then at the head's own store path when that path is readable
here (the same machine, or a shared file system) unless told to copy, and otherwise streams
the blob from the head's `BlobSource` in chunks. Every file is hashed before use: a
mismatch is a `StorageError`, never a silently wrong model.

`ReplicaStore` is the one-model `ModelStoreInterface` the kernel inside a replica reads.
No Ray import here: the blob source is anything with Ray-like ``read.remote`` calls, so the
unit tests drive this module without a cluster.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmasos.errors import ModelNotFoundError, StorageError, UnsupportedError
from llmasos.models.manifest import Manifest, ResolvedModel
from llmasos.models.tuning import TuningChoice

CHUNK_BYTES = 8 << 20
"""Bytes per chunk streamed from the head (one Ray object each)."""


def main_file(manifest: Manifest) -> tuple[str, int]:
    """(digest, size) of the weights file a replica loads; only single-file GGUF for now."""
    if manifest.format != "gguf":
        raise UnsupportedError(
            f"{manifest.name} is a {manifest.format} model: cluster replicas serve GGUF models "
            "for now"
        )
    if manifest.adapter is not None:
        raise UnsupportedError(f"{manifest.name} has a LoRA adapter: not served on the cluster yet")
    if manifest.projector is not None:
        raise UnsupportedError(
            f"{manifest.name} has a vision projector: not served on the cluster yet"
        )
    ref = next((f for f in manifest.files if f.path.endswith(".gguf")), manifest.files[0])
    return ref.digest, ref.size


def sha256_of(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


@dataclass(frozen=True)
class FetchResult:
    path: Path
    how: str
    """``cache`` (already on this node), ``shared`` (the head's path, readable here) or
    ``copied`` (streamed from the head)."""


ReadChunk = Callable[[str, int, int], bytes]
"""``read(digest, offset, length)``: bytes of a blob on the head."""


def fetch_blob(
    digest: str,
    size: int,
    cache_dir: Path,
    *,
    head_path: Path | None,
    read: ReadChunk,
    copy: bool = False,
) -> FetchResult:
    """The verified local path of blob ``digest`` (see the module docstring for the order)."""
    cached = cache_dir / "blobs" / digest.replace(":", "-", 1)
    if cached.is_file() and sha256_of(cached) == digest:
        return FetchResult(cached, "cache")
    readable = head_path is not None and os.access(head_path, os.R_OK)
    if not copy and head_path is not None and readable and sha256_of(head_path) == digest:
        return FetchResult(head_path, "shared")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=cached.parent, prefix=".tmp-")
    except OSError as error:
        raise StorageError(f"cannot write the model cache {cache_dir}: {error}") from error
    hasher = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out:
            offset = 0
            while offset < size:
                data = read(digest, offset, min(CHUNK_BYTES, size - offset))
                if not data:
                    raise StorageError(
                        f"the head sent {offset} of {size} bytes of {digest}: the blob is short"
                    )
                hasher.update(data)
                out.write(data)
                offset += len(data)
        got = f"sha256:{hasher.hexdigest()}"
        if got != digest:
            raise StorageError(f"the copy of {digest} from the head hashes to {got}: refused")
        os.replace(temp, cached)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return FetchResult(cached, "copied")


class ReplicaStore:
    """A store that holds exactly one model, at a path on this node (`ModelStoreInterface`)."""

    def __init__(self, manifest: Manifest, path: Path) -> None:
        self._resolved = ResolvedModel(manifest=manifest, path=path)

    def _check(self, name: str) -> Manifest:
        manifest = self._resolved.manifest
        if name not in (manifest.name, manifest.name.split(":")[0]):
            raise ModelNotFoundError(f"this replica serves {manifest.name}, not {name}")
        return manifest

    def list(self) -> Sequence[tuple[str, Manifest]]:
        return [(self._resolved.manifest.name, self._resolved.manifest)]

    def manifest(self, name: str, /) -> Manifest:
        return self._check(name)

    def versions(self, name: str, /) -> Sequence[Manifest]:
        return [self._check(name)]

    def resolve(self, name: str, /) -> ResolvedModel:
        self._check(name)
        return self._resolved

    def canonical_name(self, name: str, /) -> str:
        return self._check(name).name

    def _read_only(self) -> UnsupportedError:
        return UnsupportedError("a cluster replica's store is read-only: change models on the head")

    def import_path(
        self, path: Path, /, name: str | None = None, projector: Path | None = None
    ) -> Manifest:
        raise self._read_only()

    def copy(self, source: str, destination: str, /) -> Manifest:
        raise self._read_only()

    def remove(self, name: str, /) -> None:
        raise self._read_only()

    def create(self, name: str, modelfile: str, /, *, base_dir: Path) -> Manifest:
        raise self._read_only()

    def pull(
        self,
        source: str,
        /,
        *,
        name: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> Manifest:
        raise self._read_only()

    def add_version(self, name: str, path: Path, /, *, quantization: str, source: str) -> Manifest:
        raise self._read_only()

    def add_derived(
        self, name: str, paths: Sequence[Path], /, *, like: str, source: str
    ) -> Manifest:
        raise self._read_only()

    def tuning_choice(self, name: str, /) -> TuningChoice | None:
        return None

    def record_tuning(self, choice: TuningChoice, /) -> None:
        raise self._read_only()

    def forget_tuning(self, name: str, /) -> bool:
        return False
