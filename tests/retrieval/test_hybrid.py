"""The hybrid index on SQLite (FTS5) and PostgreSQL (tsvector): words, vectors, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from llmasos.errors import InvalidRequestError
from llmasos.retrieval.hybrid import HybridIndex, bm25_scores
from llmasos.retrieval.interface import IndexEntry, SearchFilters, reciprocal_rank_fusion
from llmasos.retrieval.terms import TermBlinder, words
from llmasos.storage import Database
from llmasos.storage.schema import RetrievalEntry, User

KEY = b"k" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(
    ref: int, body: str, vector: list[float], namespace: str = "alice", **kw: object
) -> IndexEntry:
    return IndexEntry(
        ref_id=ref,
        namespace=namespace,
        text=body,
        embedding=vector,
        created_at=kw.pop("created_at", T0 + timedelta(days=ref)),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def index(database: Database) -> HybridIndex:
    index = HybridIndex(database, "test", TermBlinder(KEY))
    with database.session(write=True) as session:
        index.add(
            session,
            [
                entry(
                    1,
                    "Alice is allergic to peanuts",
                    [1, 0, 0, 0],
                    kind="fact",
                    metadata={"topic": "health", "level": 2},
                ),
                entry(
                    2,
                    "Alice prefers green tea over coffee",
                    [0, 1, 0, 0],
                    kind="preference",
                    metadata={"topic": "food", "pinned": True},
                ),
                entry(
                    3,
                    "Alice moved to Lisbon in March",
                    [0, 0, 1, 0],
                    kind="event",
                    metadata={"topic": "life"},
                ),
                entry(4, "Alice's cat is called Peanut", [0.9, 0.1, 0, 0], kind="fact"),
                entry(5, "Bob is allergic to cats", [1, 0, 0, 0], namespace="bob"),
            ],
        )
    return index


def refs(hits: list) -> list[int]:  # type: ignore[type-arg]
    return [hit.ref_id for hit in hits]


def test_bm25_ranks_word_matches_within_the_namespace(index: HybridIndex) -> None:
    hits = index.search("alice", "who is allergic?", None, mode="bm25")
    assert refs(hits) == [1]
    assert hits[0].bm25_rank == 1 and hits[0].vector_rank is None
    assert refs(index.search("bob", "allergic", None, mode="bm25")) == [5]
    assert index.search("alice", "the of and", None, mode="bm25") == []  # stop words only


def test_stemming_joins_forms_of_a_word(index: HybridIndex) -> None:
    assert 4 in refs(index.search("alice", "peanut", None, mode="bm25"))
    assert 1 in refs(index.search("alice", "peanut", None, mode="bm25"))
    assert refs(index.search("alice", "moving", None, mode="bm25")) == [3]


def test_vector_search_is_exact_cosine(index: HybridIndex) -> None:
    hits = index.search("alice", "", [1, 0, 0, 0], k=2, mode="vector")
    assert refs(hits) == [1, 4]
    assert hits[0].similarity == pytest.approx(1.0)
    assert hits[1].similarity == pytest.approx(0.9 / (0.9**2 + 0.1**2) ** 0.5, rel=1e-5)


def test_hybrid_fuses_both_rankings(index: HybridIndex) -> None:
    # "tea" matches 2 by words; the vector points at 3: both come back, each side's best
    hits = index.search("alice", "green tea", [0, 0, 1, 0], k=5)
    assert set(refs(hits)[:2]) == {2, 3}
    both = index.search("alice", "Lisbon", [0, 0, 1, 0], k=5)
    assert refs(both)[0] == 3 and both[0].bm25_rank == 1 and both[0].vector_rank == 1


def test_filters_apply_to_both_sides(index: HybridIndex) -> None:
    query = ("Alice", [1, 0, 0, 0])
    assert set(refs(index.search("alice", *query, filters=SearchFilters(kind="fact")))) == {1, 4}
    assert refs(
        index.search("alice", *query, filters=SearchFilters(metadata={"topic": "food"}))
    ) == [2]
    assert refs(index.search("alice", *query, filters=SearchFilters(metadata={"level": 2}))) == [1]
    assert refs(
        index.search("alice", *query, filters=SearchFilters(metadata={"pinned": True}))
    ) == [2]
    window = SearchFilters(since=T0 + timedelta(days=2), until=T0 + timedelta(days=3))
    assert set(refs(index.search("alice", *query, filters=window))) == {2, 3}
    none = SearchFilters(metadata={"topic": "nothing"})
    assert index.search("alice", *query, filters=none) == []


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"bad key!": 1}, "filters"),
        ({"topic": [1]}, "filters.topic"),
        ({"topic": {"a": 1}}, "filters.topic"),
        ({"x": float("nan")}, "filters.x"),
    ],
)
def test_invalid_filters_name_the_field(filters: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidRequestError) as caught:
        SearchFilters(metadata=filters)
    assert caught.value.param == field


def test_removals_and_other_writers_are_seen(database: Database, index: HybridIndex) -> None:
    assert refs(index.search("alice", "", [0, 0, 1, 0], k=1, mode="vector")) == [3]
    other = HybridIndex(database, "test", TermBlinder(KEY))  # another process's view
    with database.session(write=True) as session:
        other.add(session, [entry(6, "Alice runs marathons", [0, 0, 0.99, 0.01])])
        other.remove(session, [3])
    hits = index.search("alice", "marathon", [0, 0, 1, 0], k=3)
    assert 3 not in refs(hits) and refs(hits)[0] == 6
    with database.session(write=True) as session:
        assert other.remove_namespace(session, "alice") == 4
    assert index.search("alice", "Alice", [1, 0, 0, 0]) == []
    assert refs(index.search("bob", "allergic", [1, 0, 0, 0])) == [5]


def test_update_replaces_terms_and_vector(database: Database, index: HybridIndex) -> None:
    with database.session(write=True) as session:
        index.update(session, entry(2, "Alice now drinks coffee", [0, 0, 0, 1]))
    assert index.search("alice", "tea", None, mode="bm25") == []
    assert refs(index.search("alice", "coffee", [0, 0, 0, 1], k=1)) == [2]


def test_index_stores_no_words(database: Database, index: HybridIndex) -> None:
    with database.session() as session:
        stored = " ".join(session.scalars(select(RetrievalEntry.terms)))
    assert stored and not set(words("Alice allergic peanuts tea Lisbon")) & set(stored.split())
    other_key = HybridIndex(database, "test", TermBlinder(b"o" * 32))
    assert other_key.search("alice", "allergic", None, mode="bm25") == []
    with database.session() as session:
        assert sorted(other_key.stale_ref_ids(session)) == [1, 2, 3, 4, 5]


def test_deleting_a_user_deletes_their_entries(database: Database) -> None:
    with database.session(write=True) as session:
        user = User(name="carol", role="user")
        session.add(user)
        session.flush()
        user_id = user.id
    index = HybridIndex(database, "test", TermBlinder(KEY))
    with database.session(write=True) as session:
        index.add(
            session,
            [entry(9, "Carol plays chess", [1, 0, 0, 0], namespace="carol", user_id=user_id)],
        )
    assert refs(index.search("carol", "chess", [1, 0, 0, 0])) == [9]
    with database.session(write=True) as session:
        session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
    assert index.search("carol", "chess", [1, 0, 0, 0]) == []


def test_sqlite_text_index_is_rebuilt_when_it_drifted(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("the FTS5 table exists on SQLite only")
    index = HybridIndex(database, "test", TermBlinder(KEY))
    with database.session(write=True) as session:
        index.add(session, [entry(1, "Dave collects stamps", [1, 0, 0, 0], namespace="dave")])
        session.execute(text("DELETE FROM retrieval_fts_ns"))
    assert index.search("dave", "stamps", None, mode="bm25") == []
    from llmasos.retrieval import hybrid

    hybrid._prepared.clear()
    rebuilt = HybridIndex(database, "test", TermBlinder(KEY))
    assert refs(rebuilt.search("dave", "stamps", None, mode="bm25")) == [1]


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]])
    assert [ref for ref, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_replacing_the_newest_entry_is_seen_by_a_warm_vector_cache(database: Database) -> None:
    """SQLite reuses the largest rowid once deleted: a remove + add must still change the
    namespace's census, or a cached matrix would keep the removed embedding."""
    index = HybridIndex(database, "reuse", TermBlinder(KEY))
    with database.session(write=True) as session:
        index.add(session, [entry(1, "first", [1, 0, 0, 0]), entry(2, "second", [0, 1, 0, 0])])
    assert index.search("alice", "", [0, 1, 0, 0], k=1, mode="vector")[0].ref_id == 2
    with database.session(write=True) as session:
        index.remove(session, [2])
        index.add(session, [entry(3, "third", [0, 0, 1, 0])])
    hits = index.search("alice", "", [0, 1, 0, 0], k=5, mode="vector")
    assert {h.ref_id for h in hits} == {1, 3}
    assert index.search("alice", "", [0, 0, 1, 0], k=1, mode="vector")[0].ref_id == 3


def test_range_filters_bound_numeric_metadata(index: HybridIndex) -> None:
    hits = index.search(
        "alice", "Alice", None, k=10, filters=SearchFilters(ranges={"level": (2, None)})
    )
    assert hits and all(h.ref_id == 1 for h in hits)
    assert not SearchFilters(ranges={"level": (None, 1)}).empty
    with pytest.raises(InvalidRequestError):
        SearchFilters(ranges={"bad key!": (1, 2)})


def test_terms_common_in_a_large_namespace_are_dropped_from_the_query(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database.is_sqlite:
        pytest.skip("the FTS5 vocabulary exists on SQLite only")
    from llmasos.retrieval import hybrid

    monkeypatch.setattr(hybrid, "COMMON_TERM_MIN_ROWS", 20)
    index = HybridIndex(database, "common", TermBlinder(KEY))
    bodies = [f"weather report number {n}" for n in range(40)] + ["weather over the glacier"]
    with database.session(write=True) as session:
        index.add(session, [entry(n + 1, b, [1, 0, 0, 0], "big") for n, b in enumerate(bodies)])
        index.add(
            session, [entry(100 + n, b, [1, 0, 0, 0], "tiny") for n, b in enumerate(bodies[:5])]
        )
    blinder = TermBlinder(KEY)
    scope = hybrid.scope_token("common", "big")
    scoped = [scope + blinder.term(w) for w in ("weather", "glacier")]
    assert index._without_common(scoped, "big") == scoped[1:]  # "weather" is in every row
    only_common = [scope + blinder.term("weather")] * 1 + [scope + blinder.term("report")]
    assert len(index._without_common(only_common, "big")) == 1  # the rarest term stays
    hits = index.search("big", "weather glacier", None, k=3, mode="bm25")
    assert [h.ref_id for h in hits] == [41]
    tiny = index.search("tiny", "weather", None, k=10, mode="bm25")
    assert len(tiny) == 5  # small namespaces keep every term


def test_bm25_among_candidates_ranks_as_fts5_does() -> None:
    import sqlite3

    documents = [
        "storm over the harbour",
        "storm storm warning for the harbour tonight",
        "a quiet harbour",
        "storm",
        "nothing to see here at all today",
    ]
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    connection.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(documents))
    fts5 = connection.execute(
        "SELECT rowid FROM t WHERE t MATCH 'storm OR harbour' ORDER BY bm25(t)"
    ).fetchall()
    held = {"storm": 3, "harbour": 3}
    scores = bm25_scores([d.split() for d in documents], held, len(documents))
    ours = sorted((i for i, score in enumerate(scores) if score > 0), key=lambda i: -scores[i])
    assert ours == [row for (row,) in fts5]
    assert scores[4] == 0  # no query word


def test_common_words_are_ranked_among_the_meaning_candidates(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database.is_sqlite:
        pytest.skip("the FTS5 vocabulary exists on SQLite only")
    from llmasos.retrieval import hybrid

    monkeypatch.setattr(hybrid, "COMMON_TERM_MIN_ROWS", 20)
    monkeypatch.setattr(hybrid, "LEXICAL_ROW_BUDGET", 10)
    index = HybridIndex(database, "budget", TermBlinder(KEY), candidates=4)
    near, far = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
    rows = [entry(n + 1, f"weather report {n}", near if n < 4 else far, "big") for n in range(30)]
    rows.append(entry(31, "weather weather weather report report", far, "big"))
    with database.session(write=True) as session:
        index.add(session, rows)
    [hit] = index.search("big", "weather report", near, k=1, mode="hybrid")
    assert hit.ref_id in {1, 2, 3, 4} and hit.bm25_rank is not None
    among = index._lexical("big", "weather report", SearchFilters(), 10, among=[1, 2, 3, 31])
    assert among[0][0] == 31 and {ref for ref, _ in among} == {1, 2, 3, 31}
    # words alone still search the whole namespace
    assert index.search("big", "weather report", None, k=1, mode="bm25")[0].ref_id == 31
    everywhere = index._lexical("big", "weather report", SearchFilters(), 40)
    assert len(everywhere) == 31
