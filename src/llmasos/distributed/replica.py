"""The Ray actors of a deployment: `ModelReplica` (our kernel on a node) and `BlobSource`.

A `ModelReplica` is an async Ray actor holding one `InProcessEngineClient` — the same kernel,
scheduler and backend ``llmasos serve`` runs — over a `ReplicaStore` with the one model it
serves. `start` fetches the weights (`modelfetch.fetch_blob`) and loads them for good;
`generate` is a Ray streaming generator of `GenerateOutput` deltas, merged (`coalesce`) so
that each item carries everything the request produced since the previous one. Refusals the
kernel raises (`LLMasOSError`) travel as a `ReplicaError` item, so the caller re-raises the
very error the in-process kernel would; a Ray failure (the actor or its node died) reaches the
caller as Ray's own exception, which the cluster client turns into fail-over.

`BlobSource` runs on the head and serves chunks of the head's model files by digest.
This module imports Ray; only `deploy` and the cluster client import it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from llmasos.config import Settings
from llmasos.distributed.coalesce import coalesce
from llmasos.distributed.modelfetch import FetchResult, ReplicaStore, fetch_blob, main_file
from llmasos.errors import LLMasOSError, NotFoundError
from llmasos.kernel.interface import GenerateOutput, GenerateRequest, PromptCount
from llmasos.models.manifest import Manifest

NAMESPACE = "llmasos"
"""The Ray namespace of every LLMasOS actor (detached actors are found by name in it)."""
REPLICA_PREFIX = "replica:"
BLOB_SOURCE_NAME = "blob-source"


def replica_name(model: str, index: int) -> str:
    return f"{REPLICA_PREFIX}{model}:{index}"


def parse_replica_name(name: str) -> tuple[str, int] | None:
    """``replica:smollm2:135m:0`` -> ``("smollm2:135m", 0)``; None for other actors."""
    if not name.startswith(REPLICA_PREFIX):
        return None
    model, _, index = name[len(REPLICA_PREFIX) :].rpartition(":")
    return (model, int(index)) if index.isdigit() and model else None


@dataclass(frozen=True)
class ReplicaError:
    """An `LLMasOSError` raised by the kernel in a replica, carried as a stream item."""

    error: LLMasOSError


@dataclass(frozen=True)
class ReplicaDraining:
    """The only item of a request a draining replica refused: the caller sends it elsewhere
    (nothing ran, so nothing is lost or repeated)."""

    replica: str


@ray.remote
class BlobSource:
    """Chunks of the head's model files, by digest (only those a deployment registered)."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}

    def register(self, digest: str, path: str) -> None:
        self.paths[digest] = path

    def read(self, digest: str, offset: int, length: int) -> bytes:
        path = self.paths.get(digest)
        if path is None:
            raise NotFoundError(f"the head has no model blob {digest}")
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)


async def fetch_from_head(
    manifest: Manifest, cache_dir: Path, head_path: Path, copy: bool
) -> FetchResult:
    """The model's main file on this node, verified: from ``head_path`` where this node can
    read it (unless ``copy``), else in chunks from the head's `BlobSource` (`fetch_blob`)."""
    digest, size = main_file(manifest)
    source = ray.get_actor(BLOB_SOURCE_NAME, namespace=NAMESPACE)

    def read(blob: str, offset: int, length: int) -> bytes:
        data: Any = ray.get(source.read.remote(blob, offset, length))
        return bytes(data)

    return await asyncio.to_thread(
        fetch_blob, digest, size, cache_dir, head_path=head_path, read=read, copy=copy
    )


@ray.remote
class ModelReplica:
    """One replica of one model: our kernel and backend on a cluster node."""

    def __init__(
        self,
        kernel_settings: dict[str, Any],
        manifest_json: str,
        head_path: str,
        cache_dir: str,
        copy: bool,
    ) -> None:
        self.manifest = Manifest.from_json(manifest_json)
        self.head_path = Path(head_path)
        self.cache_dir = Path(cache_dir).expanduser()
        # the head's kernel settings only; this home holds nothing but the node's cache
        self.settings = Settings(home=self.cache_dir / "home", **kernel_settings)
        self.copy = copy
        self.engine: Any = None
        self.fetched = ""
        self.path = ""
        self.draining = False
        self.active = 0
        """`generate` calls in progress (a draining replica ends when this reaches 0)."""

    async def start(self) -> dict[str, Any]:
        """Fetch and verify the weights, load the model; what and where, for the caller."""
        from llmasos.kernel.client import InProcessEngineClient

        result = await fetch_from_head(self.manifest, self.cache_dir, self.head_path, self.copy)
        self.fetched, self.path = result.how, str(result.path)
        store = ReplicaStore(self.manifest, result.path)
        self.engine = InProcessEngineClient(self.settings, store)
        await self.engine.load(self.manifest.name, keep_alive=None)
        return self.info()

    def info(self) -> dict[str, Any]:
        running = waiting = 0
        if self.engine is not None:
            for model in self.engine.resident_models():
                running, waiting = model.running, model.waiting
        return {
            "model": self.manifest.name,
            "digest": self.manifest.digest,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "fetched": self.fetched,
            "path": self.path,
            "capacity": self.settings.max_batch_size,
            "running": running,
            "waiting": waiting,
            "context_length": self.settings.context_length,
            "size_bytes": self.manifest.size,
            "loaded": self.engine is not None,
            "draining": self.draining,
            "active": self.active,
        }

    def drain(self, on: bool = True) -> int:
        """Take no new request from now on (``on=False``: take them again); the requests
        still running, which finish."""
        self.draining = on
        return self.active

    async def generate(
        self, request: GenerateRequest
    ) -> AsyncIterator[GenerateOutput | ReplicaError | ReplicaDraining]:
        if self.draining:
            yield ReplicaDraining(self.manifest.name)
            return
        self.active += 1
        try:
            interval = self.settings.cluster_stream_interval
            async for output in coalesce(self.engine.generate(request), interval):
                yield output
        except LLMasOSError as error:
            yield ReplicaError(error)
        finally:
            self.active -= 1

    async def abort(self, request_id: str) -> None:
        await self.engine.abort(request_id)

    async def tokenize(self, text: str) -> list[int] | ReplicaError:
        try:
            tokens: list[int] = await self.engine.tokenize(self.manifest.name, text)
            return tokens
        except LLMasOSError as error:
            return ReplicaError(error)

    async def count_prompt(self, request: GenerateRequest) -> PromptCount | ReplicaError:
        try:
            count: PromptCount = await self.engine.count_prompt(request)
            return count
        except LLMasOSError as error:
            return ReplicaError(error)

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None
