"""Exact cosine search over one namespace's embeddings, held in memory, rebuilt from the database.

The database (``retrieval_entries.embedding``, float32) is the truth; `VectorCache` keeps
each searched namespace as one normalised matrix and scans it with one matrix-vector
product, which is exact and, at the sizes one user's memory reaches (10^5 vectors of 384
dimensions: ~10 ms on one core), faster than building and querying an ANN graph (see
docs/design/retrieval.md for the measurement). Before each search a cheap aggregate query
(``count``, ``max(id)``) tells whether another process added or removed entries; new rows are
appended, removals trigger a reload. Namespaces are evicted least-recently-used beyond a
total vector budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_BUDGET_VECTORS = 1_000_000
"""At most this many vectors cached over all namespaces (384 dims: ~1.5 GB)."""


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
class _Namespace:
    entry_ids: np.ndarray
    ref_ids: np.ndarray
    matrix: np.ndarray
    max_entry_id: int

    @property
    def size(self) -> int:
        return len(self.entry_ids)


LoadRows = Callable[[str, int], list[tuple[int, int, bytes | None]]]
"""(namespace, after entry id) -> [(entry id, ref id, embedding blob)] in id order."""
Census = Callable[[str], tuple[int, int]]
"""namespace -> (count of entries with an embedding, max entry id)."""


class VectorCache:
    """Per-namespace normalised embedding matrices, kept in step with the database."""

    def __init__(self, budget_vectors: int = DEFAULT_BUDGET_VECTORS) -> None:
        self.budget = budget_vectors
        self._namespaces: OrderedDict[str, _Namespace] = OrderedDict()
        self._lock = threading.Lock()

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
        scores = space.matrix @ q
        scores = np.where(np.isnan(scores), -np.inf, scores)
        if allowed is not None:
            mask = np.isin(space.ref_ids, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            scores = np.where(mask, scores, -np.inf)
        count = min(count, space.size)
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(space.ref_ids[i]), float(scores[i])) for i in top if np.isfinite(scores[i])]

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
        space = self._extend(None, load(namespace, 0))
        self._store(namespace, space)
        return space

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
        return _Namespace(entry_ids, ref_ids, matrix, max_id)

    def _store(self, namespace: str, space: _Namespace) -> None:
        with self._lock:
            self._namespaces[namespace] = space
            self._namespaces.move_to_end(namespace)
            total = sum(s.size for s in self._namespaces.values())
            while total > self.budget and len(self._namespaces) > 1:
                _, evicted = self._namespaces.popitem(last=False)
                total -= evicted.size
