"""`VectorCache`: the exact scan, and the HNSW graph that takes over for large namespaces
(built for real with usearch, at a small threshold), kept in step with adds and removals."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos.retrieval import vectors
from llmasos.retrieval.vectors import VectorCache, encode_vector


class Table:
    """A namespace's rows as the database would return them: (entry id, ref id, vector)."""

    def __init__(self, count: int, dims: int = 32, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centers = self.rng.standard_normal((40, dims)).astype(np.float32)
        self.rows: list[tuple[int, int, bytes | None]] = []
        self.next_id = 1
        self.add(count)

    def add(self, count: int) -> list[int]:
        refs = []
        for _ in range(count):
            center = self.centers[self.rng.integers(len(self.centers))]
            vector = center + 0.5 * self.rng.standard_normal(center.shape).astype(np.float32)
            self.rows.append((self.next_id, 10_000 + self.next_id, encode_vector(vector)))
            refs.append(10_000 + self.next_id)
            self.next_id += 1
        return refs

    def remove(self, refs: set[int]) -> None:
        self.rows = [row for row in self.rows if row[1] not in refs]

    def census(self, _key: str) -> tuple[int, int]:
        return len(self.rows), max((r[0] for r in self.rows), default=0)

    def load(self, _key: str, after: int) -> list[tuple[int, int, bytes | None]]:
        return [row for row in self.rows if row[0] > after]

    def exact(self, query: np.ndarray, k: int, allowed: set[int] | None = None) -> list[int]:
        rows = [r for r in self.rows if allowed is None or r[1] in allowed]
        matrix = np.stack([np.frombuffer(r[2] or b"", dtype="<f4") for r in rows])
        matrix = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        scores = matrix @ (query / np.linalg.norm(query))
        return [rows[i][1] for i in np.argsort(-scores)[:k]]


def search(cache: VectorCache, table: Table, query: np.ndarray, k: int, **kw) -> list[int]:
    hits = cache.search("ns", query, k, census=table.census, load=table.load, **kw)
    return [ref for ref, _ in hits]


def graphed(count: int) -> tuple[Table, VectorCache]:
    """A table of ``count`` rows and a cache whose graph of it is built."""
    table = Table(count)
    cache = VectorCache()
    search(cache, table, table.rng.standard_normal(32).astype(np.float32), 5)
    cache.wait_for_graphs()
    assert cache._namespaces["ns"].graph is not None
    return table, cache


@pytest.fixture
def small_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors, "ANN_MIN_VECTORS", 500)


def test_exact_scan_below_the_threshold_matches_brute_force() -> None:
    table = Table(300)
    cache = VectorCache()
    for query in table.rng.standard_normal((10, 32)).astype(np.float32):
        assert search(cache, table, query, 10) == table.exact(query, 10)
    assert cache._namespaces["ns"].graph is None


@pytest.mark.usefixtures("small_threshold")
def test_graph_answers_like_the_exact_scan_and_sees_new_rows_at_once() -> None:
    table, cache = graphed(3000)
    queries = table.rng.standard_normal((30, 32)).astype(np.float32)
    recall = [len(set(search(cache, table, q, 10)) & set(table.exact(q, 10))) / 10 for q in queries]
    assert np.mean(recall) >= 0.95
    # rows added after the graph was built: the exact tail finds them immediately
    [new] = table.add(1)
    target = np.frombuffer(table.rows[-1][2] or b"", dtype="<f4")
    assert search(cache, table, target, 1) == [new]
    assert cache._namespaces["ns"].tail_start() < cache._namespaces["ns"].size


@pytest.mark.usefixtures("small_threshold")
def test_removed_rows_never_come_back_from_the_graph() -> None:
    table, cache = graphed(2000)
    target_row = table.rows[123]
    target = np.frombuffer(target_row[2] or b"", dtype="<f4")
    assert search(cache, table, target, 1) == [target_row[1]]
    table.remove({target_row[1]})
    assert target_row[1] not in search(cache, table, target, 50)
    assert cache._namespaces["ns"].graph is not None  # kept through the reload


@pytest.mark.usefixtures("small_threshold")
def test_filtered_search_is_exact_over_the_allowed_rows() -> None:
    table, cache = graphed(2000)
    allowed = {row[1] for row in table.rows[::7]}
    query = table.rng.standard_normal(32).astype(np.float32)
    assert search(cache, table, query, 10, allowed=allowed) == table.exact(query, 10, allowed)


@pytest.mark.usefixtures("small_threshold")
def test_the_graph_is_rebuilt_when_the_tail_grows() -> None:
    table, cache = graphed(1000)
    query = table.rng.standard_normal(32).astype(np.float32)
    first = cache._namespaces["ns"].graph
    table.add(400)
    search(cache, table, query, 5)
    cache.wait_for_graphs()
    space = cache._namespaces["ns"]
    assert space.graph is not first and space.tail_start() == space.size


def test_ann_off_keeps_the_exact_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors, "ANN_MIN_VECTORS", 10)
    table = Table(100)
    cache = VectorCache(ann=False)
    search(cache, table, table.rng.standard_normal(32).astype(np.float32), 5)
    cache.wait_for_graphs()
    assert cache._namespaces["ns"].graph is None
