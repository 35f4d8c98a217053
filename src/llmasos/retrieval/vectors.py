"""Cosine search over one namespace's embeddings, held in memory, rebuilt from the database.

The database (``retrieval_entries.embedding``, float32) is the truth; `VectorCache` keeps
each searched namespace as one normalised matrix. Below `ANN_MIN_VECTORS` a search is one
exact matrix-vector product (a few ms). From there on, a background thread builds an HNSW
graph (usearch, half-precision) of the namespace at low CPU priority; until it is ready the
exact scan answers. With a graph, a search takes `ANN_OVERSAMPLE` times the wanted number of
candidates from it, re-scores them exactly from the matrix, and scans exactly the rows added
since the graph was built, so new entries are found at once; removals are removed from the
graph too. The graph is rebuilt in the background when the unindexed tail grows past a
tenth of the namespace. Filtered searches scan the allowed rows exactly. Before each search
a cheap aggregate query (``count``, ``max(id)``) tells whether another process added or
removed entries; new rows are appended, removals trigger a reload. Namespaces are evicted
least-recently-used beyond a total vector budget. See docs/design/retrieval.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_BUDGET_VECTORS = 1_000_000
"""At most this many vectors cached over all namespaces (384 dims: ~1.5 GB)."""
ANN_MIN_VECTORS = 20_000
"""A namespace this large gets an HNSW graph; below it the exact scan takes a few ms."""
ANN_OVERSAMPLE = 4
"""Graph candidates per wanted hit, re-scored exactly."""
ANN_REBUILD_SHARE = 0.1
"""Rebuild the graph when rows added since it was built exceed this share of it."""


def encode_vector(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_vectors(blobs: Sequence[bytes | None], dims: int | None = None) -> np.ndarray:
    """Blobs as one float32 matrix; a missing or foreign-sized vector becomes a row of NaN
    (it then never matches)."""
    if dims is None:
        dims = next((len(b) // 4 for b in blobs if b), 0)
    matrix = np.full((len(blobs), dims), np.nan, dtype=np.float32)
    for row, blob in enumerate(blobs):
        if blob and len(blob) == 4 * dims:
            matrix[row] = np.frombuffer(blob, dtype="<f4")
    return matrix


def normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    norms[norms == 0] = 1.0
    result: np.ndarray = (matrix / norms).astype(np.float32, copy=False)
    return result


@dataclass
class _Graph:
    """An HNSW graph over a namespace's rows with entry id <= ``max_entry_id`` (keys are entry
    ids); ``lock`` serialises searches with removals."""

    index: Any
    max_entry_id: int
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Namespace:
    entry_ids: np.ndarray
    ref_ids: np.ndarray
    matrix: np.ndarray
    max_entry_id: int
    graph: _Graph | None = None

    @property
    def size(self) -> int:
        return len(self.entry_ids)

    def tail_start(self) -> int:
        """The first row the graph does not cover (0 without a graph)."""
        if self.graph is None:
            return 0
        return int(np.searchsorted(self.entry_ids, self.graph.max_entry_id, side="right"))


def build_graph(entry_ids: np.ndarray, matrix: np.ndarray) -> _Graph:
    """An HNSW graph of ``matrix`` rows keyed by ``entry_ids``: seconds per ten thousand rows,
    on up to 4 threads that inherit the calling thread's (low) priority."""
    from usearch.index import Index

    index = Index(ndim=matrix.shape[1], metric="cos", dtype="f16", connectivity=16)
    usable = ~np.isnan(matrix).any(axis=1)
    if usable.any():
        index.add(entry_ids[usable], matrix[usable], threads=min(4, os.cpu_count() or 1))
    return _Graph(index, int(entry_ids.max()) if len(entry_ids) else 0)


LoadRows = Callable[[str, int], list[tuple[int, int, bytes | None]]]
"""(namespace, after entry id) -> [(entry id, ref id, embedding blob)] in id order."""
Census = Callable[[str], tuple[int, int]]
"""namespace -> (count of entries with an embedding, max entry id)."""


class VectorCache:
    """Per-namespace normalised embedding matrices, kept in step with the database."""

    def __init__(self, budget_vectors: int = DEFAULT_BUDGET_VECTORS, *, ann: bool = True) -> None:
        self.budget = budget_vectors
        self.ann = ann
        """Build HNSW graphs for large namespaces (False: always the exact scan)."""
        self._namespaces: OrderedDict[str, _Namespace] = OrderedDict()
        self._lock = threading.Lock()
        self._building: set[str] = set()
        self._queue: queue.Queue[str] = queue.Queue()
        self._worker: threading.Thread | None = None

    def invalidate(self, namespace: str | None = None) -> None:
        with self._lock:
            if namespace is None:
                self._namespaces.clear()
            else:
                self._namespaces.pop(namespace, None)

    def search(
        self,
        namespace: str,
        query: Sequence[float],
        count: int,
        *,
        census: Census,
        load: LoadRows,
        allowed: set[int] | None = None,
    ) -> list[tuple[int, float]]:
        """The ``count`` nearest (ref id, cosine) of the namespace, optionally only ``allowed``
        ref ids."""
        space = self._current(namespace, census, load)
        if space.size == 0 or count <= 0:
            return []
        q = normalized(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
        if q.shape[0] != space.matrix.shape[1]:
            return []  # embeddings of another model: nothing comparable
        if allowed is not None:
            wanted = np.fromiter(allowed, dtype=np.int64, count=len(allowed))
            rows = np.flatnonzero(np.isin(space.ref_ids, wanted))
        elif space.graph is not None:
            rows = self._graph_rows(space, q, count)
        else:
            rows = None
        return self._best(space, q, rows, count)

    @staticmethod
    def _best(
        space: _Namespace, q: np.ndarray, rows: np.ndarray | None, count: int
    ) -> list[tuple[int, float]]:
        """Exact scores of ``rows`` (all rows when None), the best ``count``."""
        matrix = space.matrix if rows is None else space.matrix[rows]
        if matrix.shape[0] == 0:
            return []
        scores = matrix @ q
        scores = np.where(np.isnan(scores), -np.inf, scores)
        count = min(count, len(scores))
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.argsort(-scores[top], kind="stable")]
        positions = top if rows is None else rows[top]
        return [
            (int(space.ref_ids[p]), float(scores[t]))
            for p, t in zip(positions, top, strict=True)
            if np.isfinite(scores[t])
        ]

    def _graph_rows(self, space: _Namespace, q: np.ndarray, count: int) -> np.ndarray:
        """Rows to score exactly: the graph's nearest candidates plus the unindexed tail."""
        graph = space.graph
        assert graph is not None
        wanted = min(max(count * ANN_OVERSAMPLE, 64), space.size)
        with graph.lock:
            keys = np.asarray(graph.index.search(q, wanted, threads=1).keys, dtype=np.int64)
        positions = np.searchsorted(space.entry_ids, keys)
        inside = positions < space.size
        positions, keys = positions[inside], keys[inside]
        positions = positions[space.entry_ids[positions] == keys]  # removed since: dropped
        tail = np.arange(space.tail_start(), space.size)
        return np.concatenate([positions, tail])

    def _current(self, namespace: str, census: Census, load: LoadRows) -> _Namespace:
        count, max_id = census(namespace)
        with self._lock:
            space = self._namespaces.get(namespace)
            if space is not None:
                self._namespaces.move_to_end(namespace)
        if space is not None and space.size == count and space.max_entry_id == max_id:
            return space
        if space is not None and max_id > space.max_entry_id:
            rows = load(namespace, space.max_entry_id)
            if space.size + len(rows) == count:
                space = self._extend(space, rows)
                self._store(namespace, space)
                return space
        fresh = self._extend(None, load(namespace, 0))
        if space is not None and space.graph is not None:
            fresh.graph = graph = space.graph
            gone = np.setdiff1d(space.entry_ids, fresh.entry_ids, assume_unique=True)
            gone = gone[gone <= graph.max_entry_id]
            if len(gone):
                with graph.lock:
                    graph.index.remove(gone)
        self._store(namespace, fresh)
        return fresh

    @staticmethod
    def _extend(space: _Namespace | None, rows: list[tuple[int, int, bytes | None]]) -> _Namespace:
        entry_ids = np.asarray([r[0] for r in rows], dtype=np.int64)
        ref_ids = np.asarray([r[1] for r in rows], dtype=np.int64)
        dims = space.matrix.shape[1] if space is not None and space.size else None
        matrix = normalized(decode_vectors([r[2] for r in rows], dims))
        if space is not None and space.size:
            entry_ids = np.concatenate([space.entry_ids, entry_ids])
            ref_ids = np.concatenate([space.ref_ids, ref_ids])
            matrix = np.vstack([space.matrix, matrix]) if matrix.shape[0] else space.matrix
        max_id = int(entry_ids.max()) if len(entry_ids) else 0
        graph = space.graph if space is not None else None
        return _Namespace(entry_ids, ref_ids, matrix, max_id, graph)

    def _store(self, namespace: str, space: _Namespace) -> None:
        with self._lock:
            self._namespaces[namespace] = space
            self._namespaces.move_to_end(namespace)
            total = sum(s.size for s in self._namespaces.values())
            while total > self.budget and len(self._namespaces) > 1:
                _, evicted = self._namespaces.popitem(last=False)
                total -= evicted.size
        self._schedule_graph(namespace, space)

    # --- the background graph builder ------------------------------------------------------

    def _schedule_graph(self, namespace: str, space: _Namespace) -> None:
        """Queue a graph (re)build when the namespace is large and its graph missing or stale."""
        if not self.ann or space.size < ANN_MIN_VECTORS:
            return
        if space.graph is not None and space.size - space.tail_start() <= (
            ANN_REBUILD_SHARE * space.size
        ):
            return
        with self._lock:
            if namespace in self._building:
                return
            self._building.add(namespace)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._build_forever, name="llmasos-ann", daemon=True
                )
                self._worker.start()
        self._queue.put(namespace)

    def _build_forever(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # build at low CPU priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while True:
            namespace = self._queue.get()
            try:
                self._build(namespace)
            except Exception:  # a failed build leaves the exact scan answering
                log.exception("building the vector graph of a namespace failed")
            finally:
                with self._lock:
                    self._building.discard(namespace)
                self._queue.task_done()

    def _build(self, namespace: str) -> None:
        with self._lock:
            space = self._namespaces.get(namespace)
        if space is None:
            return
        try:
            graph = build_graph(space.entry_ids, space.matrix)
        except ImportError:
            log.warning("usearch is not installed: vector search stays exact (slower at scale)")
            self.ann = False
            return
        with self._lock:
            current = self._namespaces.get(namespace)
        if current is not None:
            # Rows removed since the snapshot are dropped at search time (their keys no
            # longer map to rows); rows added since are the exact-scanned tail.
            current.graph = graph
            if current is not space:
                space.graph = graph

    def wait_for_graphs(self) -> None:
        """Block until every queued graph build has finished (tests, benchmarks)."""
        self._queue.join()
