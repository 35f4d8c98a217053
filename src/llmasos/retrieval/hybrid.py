"""The hybrid index over ``retrieval_entries``: BM25 by words, cosine by meaning, fused.

Words: on SQLite an FTS5 table ``retrieval_fts_ns`` (rowid = entry id, ranked with FTS5's
``bm25``) whose tokens are each blinded term prefixed with its namespace's scope token, so a
query touches only its own namespace's postings (no intersection with a posting list of the
whole namespace, and document frequencies are per namespace); query terms held by more than
a fifth of a large namespace are dropped (BM25 weighs them near zero, and scoring their rows
is what made queries slow at 10^5 rows), and when the words left are still held by more
than `LEXICAL_ROW_BUDGET` rows, a hybrid query ranks them by BM25 among the meaning side's
candidates only (`bm25_scores` over their stored terms). On PostgreSQL a GIN index over
``to_tsvector('simple', terms)`` ranked with ``ts_rank``. Both are derived data:
`HybridIndex` creates them at start and rebuilds the FTS5 table when it disagrees with the
entries (a crash between two statements cannot happen — they share a transaction — but an
old backup or a user deleted by cascade can).
Meaning: on PostgreSQL with the pgvector extension (detected at start),
`llmasos.retrieval.pgvectors.PgVectors` (a derived ``vector`` table with HNSW indexes, searched
in SQL); elsewhere `llmasos.retrieval.vectors.VectorCache` (exact cosine in process, an HNSW
graph for large namespaces). Filters (kind, time, metadata) are SQL conditions on the
entries, applied to both sides before ranking, so a filter never hides a better match behind
worse ones. Results are fused with reciprocal rank fusion.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    case,
    column,
    delete,
    false,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from llmasos.retrieval.interface import (
    IndexEntry,
    MetadataValue,
    RetrievalIndexInterface,
    RetrievalMode,
    SearchFilters,
    SearchHit,
    reciprocal_rank_fusion,
)
from llmasos.retrieval.pgvectors import APPROXIMATE_MIN_ROWS, PgVectors
from llmasos.retrieval.terms import TermBlinder
from llmasos.retrieval.vectors import VectorCache, encode_vector
from llmasos.storage.database import Database
from llmasos.storage.schema import RetrievalEntry, RetrievalNamespace

FTS_TABLE = "retrieval_fts_ns"
FTS_VOCAB = "retrieval_fts_vocab"
"""FTS5's view of the text index's vocabulary: document frequency per token."""
COMMON_TERM_SHARE = 0.2
COMMON_TERM_MIN_ROWS = 5_000
LEXICAL_ROW_BUDGET = 2_000
"""In a large namespace, a hybrid query whose words are held by more rows than this (summed
over its terms) is ranked by words among the vector side's candidates only: scoring every
row that holds a common word is what costs the time, and such words barely tell rows
apart."""
DF_CACHE_SECONDS = 300.0
DF_CACHE_SIZE = 100_000
OLD_FTS_TABLES = ("retrieval_fts",)
"""Earlier layouts of the derived text index, dropped at start (it is rebuilt from the
entries)."""
PG_TERMS_INDEX = "ix_retrieval_entries_terms_tsv"
_LETTERS = str.maketrans("0123456789abcdef", "abcdefghijklmnop")
_prepared: dict[str, PgVectors | None] = {}
"""Databases whose derived indexes were checked at start, with their pgvector side (None:
SQLite, or PostgreSQL without the extension)."""
_prepared_lock = threading.Lock()


def scope_token(collection: str, namespace: str) -> str:
    """The one FTS5 token that marks a namespace's rows (letters only)."""
    digest = hashlib.sha256(f"{collection}\0{namespace}".encode()).hexdigest()[:20]
    return "s" + digest.translate(_LETTERS)


def metadata_equals(column: Any, key: str, value: MetadataValue) -> ColumnElement[bool]:
    """``column[key] == value`` for a JSON column, typed by the value (both engines)."""
    field = column[key]
    if isinstance(value, bool):
        return field.as_boolean() == value  # type: ignore[no-any-return]
    if isinstance(value, int):
        return field.as_integer() == value  # type: ignore[no-any-return]
    if isinstance(value, float):
        return field.as_float() == value  # type: ignore[no-any-return]
    return field.as_string() == value  # type: ignore[no-any-return]


def metadata_one_of(column: Any, key: str, values: Iterable[MetadataValue]) -> ColumnElement[bool]:
    """``column[key]`` is one of ``values`` (strings compared with one IN; an empty set
    matches nothing)."""
    values = list(values)
    strings = [v for v in values if isinstance(v, str)]
    others = [metadata_equals(column, key, v) for v in values if not isinstance(v, str)]
    if strings:
        others.append(column[key].as_string().in_(strings))
    return or_(false(), *others)


class HybridIndex(RetrievalIndexInterface):
    """One collection of the shared index in one database."""

    def __init__(
        self,
        database: Database,
        collection: str,
        blinder: TermBlinder,
        *,
        vectors: VectorCache | None = None,
        candidates: int = 50,
        native_vectors: bool = True,
    ) -> None:
        self.database = database
        self.collection = collection
        self.blinder = blinder
        self.vectors = vectors or VectorCache()
        self.candidates = candidates
        """Each side ranks at least this many before fusion (more when ``k`` is larger)."""
        self.native_vectors = native_vectors
        """Search vectors in the database when it can (pgvector); False: always in process.
        Writes keep the database's vector table either way."""
        self._df_cache: dict[str, tuple[int, float]] = {}
        self.pgvectors: PgVectors | None = None
        """The database's pgvector side, when it has one (set by `prepare`)."""
        self.prepare()

    # --- the derived text index ----------------------------------------------------------

    def prepare(self) -> None:
        """Create the text index if missing and, on SQLite, refill it if it drifted; on
        PostgreSQL detect pgvector and, with it, create and repair the vector table."""
        key = f"{self.database.display_url}#{id(self.database)}"
        with _prepared_lock:
            if key in _prepared:
                self.pgvectors = _prepared[key]
                return
            pgvectors: PgVectors | None = None
            with self.database.session(write=True) as session:
                if self.database.is_sqlite:
                    for old in OLD_FTS_TABLES:
                        session.execute(text(f"DROP TABLE IF EXISTS {old}"))
                    create = f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(terms)"
                    session.execute(text(create))
                    session.execute(
                        text(
                            f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_VOCAB} "
                            f"USING fts5vocab({FTS_TABLE}, 'row')"
                        )
                    )
                    self._resync_fts(session)
                else:
                    session.execute(text("SELECT pg_advisory_xact_lock(7311001)"))
                    session.execute(
                        text(
                            f"CREATE INDEX IF NOT EXISTS {PG_TERMS_INDEX} ON retrieval_entries "
                            "USING gin (to_tsvector('simple', terms))"
                        )
                    )
                    pgvectors = PgVectors.detect(session)
                    if pgvectors is not None:
                        pgvectors.prepare(session)
            _prepared[key] = self.pgvectors = pgvectors

    def _resync_fts(self, session: Session) -> None:
        indexed = session.scalar(text(f"SELECT count(*) FROM {FTS_TABLE}"))
        entries = session.scalar(select(func.count()).select_from(RetrievalEntry))
        if indexed == entries:
            return
        session.execute(text(f"DELETE FROM {FTS_TABLE}"))
        rows = session.execute(
            select(
                RetrievalEntry.id,
                RetrievalEntry.collection,
                RetrievalEntry.namespace,
                RetrievalEntry.terms,
            )
        ).all()
        self._fts_insert(
            session, [(r.id, scope_token(r.collection, r.namespace), r.terms) for r in rows]
        )

    @staticmethod
    def _fts_insert(session: Session, rows: list[tuple[int, str, str]]) -> None:
        """Index (entry id, scope token, blinded terms) rows, each term under its scope."""
        if rows:
            session.execute(
                text(f"INSERT INTO {FTS_TABLE}(rowid, terms) VALUES (:id, :terms)"),
                [
                    {"id": i, "terms": " ".join(f"{scope}{t}" for t in terms.split())}
                    for i, scope, terms in rows
                ],
            )

    # --- writes ----------------------------------------------------------------------------

    def add(self, session: Session, entries: Sequence[IndexEntry]) -> None:
        rows = [
            RetrievalEntry(
                collection=self.collection,
                namespace=entry.namespace,
                ref_id=entry.ref_id,
                user_id=entry.user_id,
                kind=entry.kind,
                created_at=entry.created_at,
                meta=dict(entry.metadata),
                terms=self.blinder.document_terms(entry.text),
                terms_key=self.blinder.fingerprint,
                embedding=None if entry.embedding is None else encode_vector(entry.embedding),
            )
            for entry in entries
        ]
        if self.database.is_sqlite and rows:
            # SQLite reuses the largest rowid once it is deleted; a reused id would leave the
            # namespace's census (count, max id) unchanged after a remove + add, and vector
            # caches would keep the removed embedding. Ids above every id ever counted avoid it.
            floor = max(
                session.scalar(select(func.max(RetrievalEntry.id))) or 0,
                session.scalar(select(func.max(RetrievalNamespace.max_entry_id))) or 0,
            )
            for offset, row in enumerate(rows, start=1):
                row.id = floor + offset
        session.add_all(rows)
        session.flush()
        if self.database.is_sqlite:
            self._fts_insert(
                session,
                [(r.id, scope_token(self.collection, r.namespace), r.terms) for r in rows],
            )
        if self.pgvectors is not None:
            self.pgvectors.add(session, [(r.id, r.embedding) for r in rows])
        for namespace in {r.namespace for r in rows}:
            mine = [r for r in rows if r.namespace == namespace]
            count_entries(
                session, self.database, self.collection, namespace,
                len(mine), max(r.id for r in mine), mine[0].user_id,
            )  # fmt: skip

    def update(self, session: Session, entry: IndexEntry) -> None:
        # A new row (new id) rather than an in-place change: vector caches of other processes
        # see the namespace change and reload.
        self.remove(session, [entry.ref_id])
        self.add(session, [entry])

    def remove(self, session: Session, ref_ids: Sequence[int]) -> None:
        remove_entries(session, self.database, self.collection, ref_ids)

    def remove_namespace(self, session: Session, namespace: str) -> int:
        removed = remove_namespace(session, self.database, self.collection, namespace)
        self.vectors.invalidate(f"{self.collection}\0{namespace}")
        return removed

    def reblind(self, session: Session, ref_id: int, text_: str) -> None:
        """Recompute an entry's terms from its text under the current key (embedding kept)."""
        row = session.scalar(
            select(RetrievalEntry).where(
                RetrievalEntry.collection == self.collection, RetrievalEntry.ref_id == ref_id
            )
        )
        if row is None:
            return
        row.terms = self.blinder.document_terms(text_)
        row.terms_key = self.blinder.fingerprint
        session.flush()
        if self.database.is_sqlite:
            _fts_delete(session, [row.id])
            self._fts_insert(
                session, [(row.id, scope_token(self.collection, row.namespace), row.terms)]
            )
        if self.pgvectors is not None:
            self.pgvectors.restamp(session, [row.id])

    def stale_ref_ids(self, session: Session) -> list[int]:
        """Rows whose terms were blinded under another key (the master key was rotated)."""
        return list(
            session.scalars(
                select(RetrievalEntry.ref_id).where(
                    RetrievalEntry.collection == self.collection,
                    RetrievalEntry.terms_key != self.blinder.fingerprint,
                )
            )
        )

    def reblind_stale(
        self, session: Session, texts_of: Callable[[list[int]], Iterable[tuple[int, str]]]
    ) -> int:
        """Re-blind every entry blinded under another key; how many. ``texts_of`` gives the
        owning collection's decrypted (ref id, text) for a batch of at most 500 ref ids."""
        stale = self.stale_ref_ids(session)
        for start in range(0, len(stale), 500):
            for ref_id, text_ in texts_of(stale[start : start + 500]):
                self.reblind(session, ref_id, text_)
        return len(stale)

    # --- search ----------------------------------------------------------------------------

    def search(
        self,
        namespace: str,
        query: str,
        embedding: Sequence[float] | None,
        *,
        k: int = 10,
        filters: SearchFilters | None = None,
        mode: RetrievalMode = "hybrid",
    ) -> list[SearchHit]:
        filters = filters or SearchFilters()
        depth = max(self.candidates, 4 * k)
        lexical: list[tuple[int, float]] = []
        semantic: list[tuple[int, float]] = []
        if mode in ("hybrid", "vector") and embedding is not None:
            semantic = self._semantic(namespace, embedding, filters, depth)
        if mode in ("hybrid", "bm25"):
            among = [ref for ref, _ in semantic] if mode == "hybrid" and semantic else None
            lexical = self._lexical(namespace, query, filters, depth, among)
        lexical_rank = {ref: rank for rank, (ref, _) in enumerate(lexical, start=1)}
        semantic_rank = {ref: rank for rank, (ref, _) in enumerate(semantic, start=1)}
        similarity = dict(semantic)
        if mode == "bm25":
            ranked = lexical
        elif mode == "vector":
            ranked = semantic
        else:
            ranked = reciprocal_rank_fusion([[r for r, _ in lexical], [r for r, _ in semantic]])
        return [
            SearchHit(
                ref_id=ref,
                score=score,
                bm25_rank=lexical_rank.get(ref),
                vector_rank=semantic_rank.get(ref),
                similarity=similarity.get(ref),
            )
            for ref, score in ranked[:k]
        ]

    def _conditions(self, namespace: str, filters: SearchFilters) -> list[ColumnElement[bool]]:
        entry = RetrievalEntry
        conditions: list[ColumnElement[bool]] = [
            entry.collection == self.collection,
            entry.namespace == namespace,
        ]
        if filters.kind is not None:
            conditions.append(entry.kind == filters.kind)
        if filters.since is not None:
            conditions.append(entry.created_at >= filters.since)
        if filters.until is not None:
            conditions.append(entry.created_at <= filters.until)
        conditions.extend(metadata_equals(entry.meta, k, v) for k, v in filters.metadata.items())
        for key, (low, high) in filters.ranges.items():
            if low is not None:
                conditions.append(entry.meta[key].as_float() >= low)
            if high is not None:
                conditions.append(entry.meta[key].as_float() <= high)
        for key, values in filters.metadata_in.items():
            conditions.append(metadata_one_of(entry.meta, key, values))
        return conditions

    def _lexical(
        self,
        namespace: str,
        query: str,
        filters: SearchFilters,
        depth: int,
        among: list[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Rows ranked by BM25 for ``query``; with ``among`` (the vector side's candidates),
        only those rows when the query's words are too common to score everywhere."""
        terms = self.blinder.query_terms(query)
        if not terms:
            return []
        conditions = self._conditions(namespace, filters)
        if self.database.is_sqlite:
            scope = scope_token(self.collection, namespace)
            scoped = self._without_common([f"{scope}{t}" for t in dict.fromkeys(terms)], namespace)
            match = " OR ".join(f'"{t}"' for t in scoped)
            if among is not None and (size := self._census(namespace)[0]) >= COMMON_TERM_MIN_ROWS:
                frequencies = self._frequencies(scoped)
                if sum(frequencies.values()) > LEXICAL_ROW_BUDGET:  # too many rows to score
                    return self._bm25_among(namespace, among, depth, frequencies, size)
            if filters.empty:  # the scoped terms already limit the match: no join needed
                return self._fts_only(match, depth)
            fts = table(FTS_TABLE, column("rowid"))
            rank: ColumnElement[float] = literal_column(f"bm25({FTS_TABLE})")
            fts_statement = (
                select(RetrievalEntry.ref_id, rank)
                .select_from(fts)
                .join(RetrievalEntry, RetrievalEntry.id == fts.c.rowid)
                .where(text(f"{FTS_TABLE} MATCH :match").bindparams(match=match), *conditions)
                .order_by(rank)
                .limit(depth)
            )
            with self.database.session() as session:
                return [(ref, -float(score)) for ref, score in session.execute(fts_statement)]
        vector = func.to_tsvector(literal_column("'simple'"), RetrievalEntry.terms)
        tsquery = func.to_tsquery(literal_column("'simple'"), " | ".join(terms))
        ts_rank = func.ts_rank(vector, tsquery)
        statement = (
            select(RetrievalEntry.ref_id, ts_rank)
            .where(vector.op("@@")(tsquery), *conditions)
            .order_by(ts_rank.desc(), RetrievalEntry.id)
            .limit(depth)
        )
        with self.database.session() as session:
            return [(ref, float(score)) for ref, score in session.execute(statement)]

    def _without_common(self, scoped: list[str], namespace: str) -> list[str]:
        """Drop query terms found in more than `COMMON_TERM_SHARE` of a large namespace.

        BM25 gives such a term almost no weight (its IDF is near zero), yet scoring every row
        that holds it is what makes a query slow at 10^5 rows. The rarest term is always kept.
        Document frequencies come from FTS5's vocabulary table, cached for a few minutes.
        """
        if len(scoped) < 2:
            return scoped
        size, _ = self._census(namespace)
        if size < COMMON_TERM_MIN_ROWS:
            return scoped
        frequencies = self._frequencies(scoped)
        limit = COMMON_TERM_SHARE * size
        kept = [t for t in scoped if frequencies[t] <= limit]
        return kept or [min(scoped, key=lambda t: frequencies[t])]

    def _bm25_among(
        self,
        namespace: str,
        refs: list[int],
        depth: int,
        frequencies: dict[str, int],
        size: int,
    ) -> list[tuple[int, float]]:
        """The rows of ``refs`` that hold a query term, ranked by BM25 computed here from their
        stored terms and the namespace's document frequencies (``frequencies`` of the scoped
        terms, of ``size`` rows): FTS5 cannot restrict a match to a few rowids without reading
        the terms' whole doclists, which is the cost avoided. Document length is normalized
        by the candidates' mean length."""
        scope = scope_token(self.collection, namespace)
        with self.database.session() as session:
            # by (collection, ref_id), the unique key: with the namespace in the condition,
            # SQLite walks the namespace's index instead, every row of a large namespace
            rows = session.execute(
                select(RetrievalEntry.ref_id, RetrievalEntry.namespace, RetrievalEntry.terms).where(
                    RetrievalEntry.collection == self.collection, RetrievalEntry.ref_id.in_(refs)
                )
            ).all()
        documents = [
            (int(ref), (terms or "").split()) for ref, space, terms in rows if space == namespace
        ]
        if not documents:
            return []
        scores = bm25_scores(
            [words for _, words in documents],
            {term.removeprefix(scope): held for term, held in frequencies.items()},
            max(size, len(documents)),
        )
        ranked = sorted(
            ((ref, score) for (ref, _), score in zip(documents, scores, strict=True) if score > 0),
            key=lambda hit: -hit[1],
        )
        return ranked[:depth]

    def _frequencies(self, scoped: list[str]) -> dict[str, int]:
        now = time.monotonic()
        known = {
            t: hit[0]
            for t in scoped
            if (hit := self._df_cache.get(t)) is not None and now - hit[1] < DF_CACHE_SECONDS
        }
        missing = [t for t in scoped if t not in known]
        if missing:
            marks = ", ".join(f":t{i}" for i in range(len(missing)))
            with self.database.session() as session:
                found: dict[str, int] = dict(
                    session.execute(
                        text(f"SELECT term, doc FROM {FTS_VOCAB} WHERE term IN ({marks})"),
                        {f"t{i}": t for i, t in enumerate(missing)},
                    ).all()
                )
            if len(self._df_cache) > DF_CACHE_SIZE:
                self._df_cache.clear()
            for t in missing:
                known[t] = int(found.get(t, 0))
                self._df_cache[t] = (known[t], now)
        return known

    def _fts_only(self, match: str, depth: int) -> list[tuple[int, float]]:
        with self.database.session() as session:
            ranked = session.execute(
                text(
                    f"SELECT rowid, bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} "
                    f"WHERE {FTS_TABLE} MATCH :match ORDER BY score LIMIT :depth"
                ),
                {"match": match, "depth": depth},
            ).all()
            refs = dict(
                session.execute(
                    select(RetrievalEntry.id, RetrievalEntry.ref_id).where(
                        RetrievalEntry.id.in_([row_id for row_id, _ in ranked])
                    )
                ).all()
            )
        return [(refs[row_id], -float(score)) for row_id, score in ranked if row_id in refs]

    def _semantic(
        self, namespace: str, embedding: Sequence[float], filters: SearchFilters, depth: int
    ) -> list[tuple[int, float]]:
        if self.pgvectors is not None and self.native_vectors:
            # Filtered searches are exact; unfiltered ones of a large namespace use the graph.
            approximate = filters.empty and self._census(namespace)[0] >= APPROXIMATE_MIN_ROWS
            conditions = [] if filters.empty else self._conditions(namespace, filters)
            with self.database.session() as session:
                return self.pgvectors.search(
                    session,
                    self.collection,
                    namespace,
                    embedding,
                    conditions,
                    depth,
                    approximate=approximate,
                )
        allowed: set[int] | None = None
        if not filters.empty:
            with self.database.session() as session:
                allowed = set(
                    session.scalars(
                        select(RetrievalEntry.ref_id).where(*self._conditions(namespace, filters))
                    )
                )
            if not allowed:
                return []
        return self.vectors.search(
            f"{self.collection}\0{namespace}",
            embedding,
            depth,
            census=lambda _key: self._census(namespace),
            load=lambda _key, after: self._load(namespace, after),
            allowed=allowed,
        )

    def _census(self, namespace: str) -> tuple[int, int]:
        with self.database.session() as session:
            row = session.get(RetrievalNamespace, (self.collection, namespace))
            return (row.entries, row.max_entry_id) if row is not None else (0, 0)

    def _load(self, namespace: str, after: int) -> list[tuple[int, int, bytes | None]]:
        with self.database.session() as session:
            rows = session.execute(
                select(RetrievalEntry.id, RetrievalEntry.ref_id, RetrievalEntry.embedding)
                .where(
                    RetrievalEntry.collection == self.collection,
                    RetrievalEntry.namespace == namespace,
                    RetrievalEntry.id > after,
                )
                .order_by(RetrievalEntry.id)
            ).all()
        if after == 0:
            self._repair_counts(namespace, rows)
        return [(int(i), int(r), None if e is None else bytes(e)) for i, r, e in rows]

    def _repair_counts(self, namespace: str, rows: Sequence[Any]) -> None:
        """After a full load: if the counters drifted (rows deleted by a cascade, a restored
        backup), set them to what is there, so the next search does not reload again."""
        entries, max_id = len(rows), max((int(r[0]) for r in rows), default=0)
        if self._census(namespace) == (entries, max_id):
            return
        with self.database.session(write=True) as session:
            row = session.get(RetrievalNamespace, (self.collection, namespace))
            if row is None and entries:
                session.add(
                    RetrievalNamespace(
                        collection=self.collection,
                        namespace=namespace,
                        entries=entries,
                        max_entry_id=max_id,
                    )
                )
            elif row is not None:
                row.entries, row.max_entry_id = entries, max_id


# --- removal without a blinder: owners of a collection delete their rows' entries -------------


def remove_entries(
    session: Session, database: Database, collection: str, ref_ids: Sequence[int]
) -> None:
    """Remove the entries of these rows of ``collection`` (unknown ids are ignored), in the
    caller's transaction. Needs no key, so a collection's owner can forget its rows
    wherever it deletes them; vector caches see the namespace census change and reload."""
    if not ref_ids:
        return
    where = (RetrievalEntry.collection == collection) & RetrievalEntry.ref_id.in_(list(ref_ids))
    found = session.execute(select(RetrievalEntry.id, RetrievalEntry.namespace).where(where)).all()
    if database.is_sqlite:
        _fts_delete(session, [entry_id for entry_id, _ in found])
    session.execute(delete(RetrievalEntry).where(where))
    for namespace in {n for _, n in found}:
        delta = -sum(1 for _, n in found if n == namespace)
        count_entries(session, database, collection, namespace, delta, 0, None)


def remove_namespace(session: Session, database: Database, collection: str, namespace: str) -> int:
    """Remove every entry of one namespace and its counters; how many entries there were."""
    where = (RetrievalEntry.collection == collection) & (RetrievalEntry.namespace == namespace)
    ids = list(session.scalars(select(RetrievalEntry.id).where(where)))
    if database.is_sqlite:
        _fts_delete(session, ids)
    session.execute(delete(RetrievalEntry).where(where))
    session.execute(
        delete(RetrievalNamespace).where(
            RetrievalNamespace.collection == collection,
            RetrievalNamespace.namespace == namespace,
        )
    )
    return len(ids)


def count_entries(
    session: Session,
    database: Database,
    collection: str,
    namespace: str,
    delta: int,
    max_id: int,
    user_id: int | None,
) -> None:
    """Keep a namespace's counters (entries, largest id) in step, in the writer's transaction."""
    insert = sqlite_insert if database.is_sqlite else postgresql_insert
    table = RetrievalNamespace
    statement = insert(table).values(
        collection=collection,
        namespace=namespace,
        user_id=user_id,
        entries=max(delta, 0),
        max_entry_id=max_id,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["collection", "namespace"],
        set_={
            "entries": table.entries + delta,
            "max_entry_id": case((table.max_entry_id > max_id, table.max_entry_id), else_=max_id),
        },
    )
    session.execute(statement)


def _fts_delete(session: Session, ids: list[int]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        session.execute(
            text(f"DELETE FROM {FTS_TABLE} WHERE rowid IN ({','.join(map(str, chunk))})")
        )


def bm25_scores(
    documents: Sequence[Sequence[str]],
    frequencies: dict[str, int],
    size: int,
    k1: float = 1.2,
    b: float = 0.75,
) -> list[float]:
    """Okapi BM25 of each document (its terms) for the query terms of ``frequencies`` (term:
    rows holding it, of ``size``), with FTS5's constants and its floor on a term's IDF."""
    average = sum(len(d) for d in documents) / len(documents) or 1.0
    weights = {
        term: max(math.log((size - held + 0.5) / (held + 0.5)), 1e-6)
        for term, held in frequencies.items()
    }
    scores = []
    for document in documents:
        counts = Counter(t for t in document if t in weights)
        norm = k1 * (1 - b + b * len(document) / average)
        scores.append(sum(weights[t] * n * (k1 + 1) / (n + norm) for t, n in counts.items()))
    return scores
