"""The pgvector path of the hybrid index, on a PostgreSQL server that has the extension.

One database on `pgvector_server` (the pgserver wheel's PostgreSQL 16 with pgvector) is
shared by the module; each test uses its own collection. The other paths are tested in
test_hybrid.py and test_vectors.py; here the same behaviours are checked with vectors
searched in SQL: cosine ranking, filters, removal, replacement, namespaces, the repair at
start, agreement with the in-process exact search, and memory search end to end.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from llmasos.config import Settings
from llmasos.memory.memories import MemoryStore
from llmasos.retrieval import hybrid, pgvectors
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry, SearchFilters
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage import Database, open_database
from llmasos.storage.schema import User
from tests.conftest import PostgresServer
from tests.memory.conftest import ALICE, BOB, WordEngine, word_vector

KEY = b"k" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def pg_database(
    pgvector_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    pgvector_server.execute(f"CREATE DATABASE {name}")
    settings = Settings(
        home=tmp_path_factory.mktemp("pgvector"), database_url=pgvector_server.url(name)
    )
    try:
        with open_database(settings) as database:
            yield database
    finally:
        pgvector_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def entry(ref: int, body: str, vector: list[float], namespace: str = "alice", **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("created_at", T0 + timedelta(days=ref))
    return IndexEntry(ref_id=ref, namespace=namespace, text=body, embedding=vector, **kw)  # type: ignore[arg-type]


def refs(hits: list) -> list[int]:  # type: ignore[type-arg]
    return [hit.ref_id for hit in hits]


def vector_rows(database: Database, collection: str, namespace: str | None = None) -> int:
    where = "collection = :c" + (" AND namespace = :n" if namespace else "")
    with database.session() as session:
        return int(
            session.scalar(
                text(f"SELECT count(*) FROM retrieval_vectors WHERE {where}"),
                {"c": collection, "n": namespace},
            )
            or 0
        )


def restart(database: Database, collection: str, **kw: object) -> HybridIndex:
    """A new process's first index of this database: detection and repair run again."""
    hybrid._prepared.clear()
    return HybridIndex(database, collection, TermBlinder(KEY), **kw)  # type: ignore[arg-type]


def test_ranks_by_cosine_filters_and_keeps_namespaces_apart(pg_database: Database) -> None:
    index = restart(pg_database, "pgv-basic")
    assert index.pgvectors is not None
    assert tuple(map(int, index.pgvectors.version.split(".")[:2])) >= (0, 5)
    with pg_database.session(write=True) as session:
        index.add(
            session,
            [
                entry(1, "Alice is allergic to peanuts", [1, 0, 0, 0], kind="fact",
                      metadata={"topic": "health", "level": 2}),
                entry(2, "Alice prefers green tea", [0, 1, 0, 0], kind="preference",
                      metadata={"topic": "food", "pinned": True}),
                entry(3, "Alice moved to Lisbon", [0, 0, 1, 0], kind="event"),
                entry(4, "Alice's cat is called Peanut", [0.9, 0.1, 0, 0], kind="fact"),
                entry(5, "Bob is allergic to cats", [1, 0, 0, 0], namespace="bob"),
            ],
        )  # fmt: skip
    assert vector_rows(pg_database, "pgv-basic") == 5
    hits = index.search("alice", "", [1, 0, 0, 0], k=2, mode="vector")
    assert refs(hits) == [1, 4]
    assert hits[0].similarity == pytest.approx(1.0)
    assert hits[1].similarity == pytest.approx(0.9 / (0.9**2 + 0.1**2) ** 0.5, rel=1e-5)
    assert 5 not in refs(index.search("alice", "", [1, 0, 0, 0], k=10, mode="vector"))
    assert refs(index.search("bob", "", [1, 0, 0, 0], mode="vector")) == [5]
    assert index.search("alice", "", [1, 0, 0], mode="vector") == []  # another model's size
    both = index.search("alice", "Lisbon", [0, 0, 1, 0], k=5)
    assert refs(both)[0] == 3 and both[0].bm25_rank == 1 and both[0].vector_rank == 1
    query = ("Alice", [1, 0, 0, 0])
    assert set(refs(index.search("alice", *query, filters=SearchFilters(kind="fact")))) == {1, 4}
    food = SearchFilters(metadata={"topic": "food"})
    assert refs(index.search("alice", *query, filters=food, mode="vector")) == [2]
    pinned = SearchFilters(metadata={"pinned": True})
    assert refs(index.search("alice", *query, filters=pinned, mode="vector")) == [2]
    level = SearchFilters(ranges={"level": (2, None)})
    assert refs(index.search("alice", *query, filters=level, mode="vector")) == [1]
    window = SearchFilters(since=T0 + timedelta(days=2), until=T0 + timedelta(days=3))
    assert set(refs(index.search("alice", *query, filters=window, mode="vector"))) == {2, 3}


def test_a_filter_or_a_small_namespace_never_hides_a_better_match(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 rows of a crowd sit nearest the query; the searched rows are farther away. Both a
    filter (exact scan) and a namespace searched through the HNSW index (whose candidates
    the crowd takes) still return the best allowed rows."""
    monkeypatch.setattr(hybrid, "APPROXIMATE_MIN_ROWS", 0)
    index = restart(pg_database, "pgv-hide", candidates=5)
    rng = np.random.default_rng(7)
    crowd = [[1.0, 0.0, *rng.uniform(0, 0.05, 6)] for _ in range(200)]
    with pg_database.session(write=True) as session:
        index.add(session, [entry(n, "crowd", v, "crowd", kind="common") for n, v in
                            enumerate(crowd, start=1)])  # fmt: skip
        index.add(session, [entry(300 + n, "rare", [1.0, 0.2 * n, 1, 0, 0, 0, 0, 0], "crowd",
                                  kind="rare") for n in range(3)])  # fmt: skip
        index.add(session, [entry(400 + n, "few", [0.2 * n, 1, 0, 0, 0, 0, 0, 0], "few")
                            for n in range(3)])  # fmt: skip
    query = [1.0, 0, 0, 0, 0, 0, 0, 0]
    rare = index.search("crowd", "", query, k=3, filters=SearchFilters(kind="rare"), mode="vector")
    assert refs(rare) == [300, 301, 302]
    calls: list[tuple[bool, int]] = []
    ranked = pgvectors.PgVectors._ranked

    def spy(*args: object) -> list[tuple[int, float]]:
        hits = ranked(*args)  # type: ignore[arg-type]
        calls.append((bool(args[-1]), len(hits)))
        return hits

    monkeypatch.setattr(pgvectors.PgVectors, "_ranked", staticmethod(spy))
    few = index.search("few", "", query, k=3, mode="vector")
    assert calls == [(True, 3), (False, 3)]  # the index's answer was short: asked exactly
    assert refs(few) == [402, 401, 400]
    assert few[0].similarity == pytest.approx(0.4 / (1 + 0.4**2) ** 0.5, rel=1e-5)


def test_removal_replacement_and_cascades_follow_the_entries(pg_database: Database) -> None:
    index = restart(pg_database, "pgv-writes")
    with pg_database.session(write=True) as session:
        user = User(name=f"carol-{uuid.uuid4().hex[:6]}", role="user")
        session.add(user)
        session.flush()
        carol = user.id
    with pg_database.session(write=True) as session:
        index.add(
            session,
            [
                entry(1, "first", [1, 0, 0]),
                entry(2, "second", [0, 1, 0]),
                entry(3, "third", [0, 0, 1]),
                entry(4, "chess", [1, 1, 0], namespace="carol", user_id=carol),
                entry(5, "other", [1, 0, 0], namespace="other"),
            ],
        )
    with pg_database.session(write=True) as session:
        index.remove(session, [3])
        index.update(session, entry(2, "second, changed", [0, 0, 1]))
    assert vector_rows(pg_database, "pgv-writes", "alice") == 2
    assert refs(index.search("alice", "", [0, 1, 0], k=5, mode="vector")) == [1, 2]
    top = index.search("alice", "", [0, 0, 1], k=1, mode="vector")
    assert refs(top) == [2] and top[0].similarity == pytest.approx(1.0)
    with pg_database.session(write=True) as session:
        session.execute(text("DELETE FROM users WHERE id = :id"), {"id": carol})
    assert vector_rows(pg_database, "pgv-writes", "carol") == 0
    assert index.search("carol", "chess", [1, 1, 0]) == []
    with pg_database.session(write=True) as session:
        assert index.remove_namespace(session, "alice") == 2
    assert vector_rows(pg_database, "pgv-writes", "alice") == 0
    assert index.search("alice", "first", [1, 0, 0]) == []
    assert refs(index.search("other", "", [1, 0, 0], mode="vector")) == [5]


def test_the_vector_table_is_repaired_at_start(
    pg_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    index = restart(pg_database, "pgv-repair")
    with pg_database.session(write=True) as session:
        index.add(session, [entry(n, f"row {n}", [1, n, 0]) for n in range(1, 6)])
    entry_of = "(SELECT id FROM retrieval_entries WHERE collection='pgv-repair' AND ref_id={})"
    with pg_database.session(write=True) as session:  # a row lost, one moved, one foreign ...
        session.execute(text(f"DELETE FROM retrieval_vectors WHERE entry_id={entry_of.format(1)}"))
        session.execute(text("UPDATE retrieval_vectors SET namespace = 'elsewhere' "
                             f"WHERE entry_id = {entry_of.format(2)}"))  # fmt: skip
        session.execute(text("INSERT INTO retrieval_vectors VALUES "
                             "(999999, 'pgv-repair', 'alice', 3, '[1,1,0]', '1')"))  # fmt: skip
        # ... and an entry replaced under its id (as a restored backup would): another vector
        session.execute(
            text(f"UPDATE retrieval_entries SET embedding = :e WHERE id = {entry_of.format(3)}"),
            {"e": np.asarray([0, 0, 1], dtype="<f4").tobytes()},
        )
    index = restart(pg_database, "pgv-repair")
    assert vector_rows(pg_database, "pgv-repair", "alice") == 5
    assert vector_rows(pg_database, "pgv-repair", "elsewhere") == 0
    assert refs(index.search("alice", "", [1, 0, 0], k=1, mode="vector")) == [1]
    top = index.search("alice", "", [0, 0, 1], k=1, mode="vector")
    assert refs(top) == [3] and top[0].similarity == pytest.approx(1.0)
    with pg_database.session(write=True) as session:  # new terms, same embedding: kept as is
        index.reblind(session, 4, "row four")
    with caplog.at_level(logging.INFO, logger="llmasos.retrieval.pgvectors"):
        index = restart(pg_database, "pgv-repair")
    assert not [r for r in caplog.records if r.message.startswith("rebuilt")]
    with pg_database.session(write=True) as session:
        session.execute(text("DROP TABLE retrieval_vectors"))
        index.remove(session, [5])  # the trigger outlives the table without failing
    index = restart(pg_database, "pgv-repair")
    assert vector_rows(pg_database, "pgv-repair") == 4
    assert refs(index.search("alice", "", [1, 4, 0], k=1, mode="vector")) == [4]
    with pg_database.session() as session:
        indexes = set(session.scalars(text("SELECT indexname FROM pg_indexes WHERE "
                                           "tablename = 'retrieval_vectors'")))  # fmt: skip
    assert "ix_retrieval_vectors_hnsw_3" in indexes


@pytest.mark.parametrize("approximate", [False, True], ids=["exact", "hnsw"])
def test_results_equal_the_in_process_exact_search(
    pg_database: Database, monkeypatch: pytest.MonkeyPatch, approximate: bool
) -> None:
    """Two embedding sizes side by side (one partial HNSW index each); on a small set both
    the exact scan and the index return the in-process path's top k and cosines."""
    if approximate:
        monkeypatch.setattr(hybrid, "APPROXIMATE_MIN_ROWS", 0)
    collection = f"pgv-same-{approximate}"
    native = restart(pg_database, collection)
    in_process = HybridIndex(pg_database, collection, TermBlinder(KEY), native_vectors=False)
    rng = np.random.default_rng(11)
    sizes = {"d16": 16, "d8": 8}
    with pg_database.session(write=True) as session:
        for offset, (namespace, dims) in enumerate(sizes.items()):
            native.add(session, [
                entry(offset * 1000 + n, "x", list(rng.normal(size=dims)), namespace,
                      kind="odd" if n % 2 else "even")
                for n in range(150)
            ])  # fmt: skip
    for namespace, dims in sizes.items():
        for _ in range(3):
            query = list(rng.normal(size=dims))
            for filters in (None, SearchFilters(kind="odd")):
                mine = native.search(namespace, "", query, k=10, filters=filters, mode="vector")
                theirs = in_process.search(namespace, "", query, k=10, filters=filters,
                                           mode="vector")  # fmt: skip
                assert refs(mine) == refs(theirs)
                assert [h.similarity for h in mine] == pytest.approx(
                    [h.similarity for h in theirs], abs=1e-5
                )
    with pg_database.session() as session:
        indexes = set(session.scalars(text("SELECT indexname FROM pg_indexes")))
    assert {"ix_retrieval_vectors_hnsw_8", "ix_retrieval_vectors_hnsw_16"} <= indexes


def test_memory_search_runs_on_pgvector(pg_database: Database, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=pg_database.display_url)
    hybrid._prepared.clear()
    store = MemoryStore.open(settings, pg_database, WordEngine())
    assert store.index.pgvectors is not None

    def run(coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run(coroutine)

    first = run(store.add(ALICE, "Alice is allergic to peanuts"))
    reordered = run(store.add(ALICE, "To peanuts Alice is allergic"))  # equal vectors: merged
    assert not reordered.created and reordered.item.id == first.item.id
    tea = run(store.add(ALICE, "Alice prefers green tea")).item.id
    run(store.add(BOB, "Bob prefers green tea"))
    assert vector_rows(pg_database, "memory") == 3
    found = run(store.search(ALICE, "green tea please", mode="vector", min_similarity=0.35))
    a, b = (np.array(word_vector(t)) for t in ("green tea please", "Alice prefers green tea"))
    cosine = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    assert [i.id for i in found] == [tea] and found[0].score == pytest.approx(cosine, rel=1e-5)
    store.delete(ALICE, tea)
    assert vector_rows(pg_database, "memory") == 2
    assert run(store.search(ALICE, "green tea", mode="vector", min_similarity=0.35)) == []
    assert [i.text for i in run(store.search(BOB, "green tea", k=1))] == ["Bob prefers green tea"]


def test_a_role_that_cannot_create_the_extension_keeps_the_other_path(
    pgvector_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"test_{uuid.uuid4().hex[:12]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    pgvector_server.execute(f"CREATE ROLE {role} LOGIN")
    pgvector_server.execute(f"CREATE DATABASE {name} OWNER {role}")
    url = pgvector_server.url(name).replace("postgres@", f"{role}@")
    try:
        with open_database(Settings(home=tmp_path, database_url=url)) as database:
            hybrid._prepared.clear()
            with caplog.at_level(logging.WARNING, logger="llmasos.retrieval.pgvectors"):
                index = HybridIndex(database, "pgv-denied", TermBlinder(KEY))
            assert index.pgvectors is None
            assert next(r.message for r in caplog.records if "pgvector" in r.message).startswith(
                "cannot create the pgvector extension (permission denied"
            )
            with database.session(write=True) as session:
                index.add(session, [entry(1, "one", [1, 0]), entry(2, "two", [0, 1])])
            assert refs(index.search("alice", "", [0, 1], k=1, mode="vector")) == [2]
    finally:
        pgvector_server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        pgvector_server.execute(f"DROP ROLE IF EXISTS {role}")
