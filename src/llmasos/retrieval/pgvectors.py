"""Vector search inside PostgreSQL with pgvector, where the server has the extension.

Detected at start (`PgVectors.detect`): the ``vector`` extension is used when it is installed
in the database, or available (``pg_available_extensions``) and creatable by our role; when it
cannot be created, one log line says why and the in-process path (`VectorCache`) stays. The
``pgvector`` Python package supplies the SQLAlchemy type (no hand-made vector literals).

Data: ``retrieval_vectors`` is derived from ``retrieval_entries`` like the text index is —
created at start, never by a migration (a server without the extension must still migrate),
and repaired at start when it disagrees with the entries (rows missing, rows whose entry is
gone or changed). One row per entry with a usable embedding: entry id, collection,
namespace, ``dims`` and an untyped ``vector`` column, so embeddings of several models (384,
768, 1024 dimensions ...) live in one table. Each dimension present gets its own partial
HNSW index over ``embedding::vector(dims)`` with cosine ops (``WHERE dims = n``), the layout
pgvector documents for mixed dimensions; an index is created the first time a dimension is
written. Above `HNSW_MAX_DIMS` (pgvector's limit for ``vector``) there is no index and those
searches are exact.

Consistency: writers insert the vector rows in the transaction that inserts the entries;
a statement-level trigger on ``retrieval_entries`` deletes the vector rows of deleted entries
in the deleting statement itself, so every removal path (an item removed, a namespace
dropped, a user deleted by cascade, a migration's bulk delete) keeps the table exact.

Search: the query's dimension selects the rows (``dims = len(query)``). A namespace smaller
than `APPROXIMATE_MIN_ROWS`, or any filtered search, is scored exactly: the ORDER BY uses the
uncast column, which no index matches, so PostgreSQL reads the namespace's (filtered) rows
and sorts them by the cosine distance. An unfiltered search of a larger namespace orders by
the cast expression, which the HNSW index serves (``hnsw.ef_search``: 4 per wanted row);
since pgvector before 0.8 filters the graph's candidates after the scan, a result shorter
than asked for (other namespaces' rows took the candidates) is asked again exactly, so the
namespace condition never hides a better match. Similarities are ``1 - (a <=> b)``, the
cosine similarity, the same figure the in-process path reports.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    ColumnElement,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    func,
    select,
    text,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from llmasos.storage.schema import RetrievalEntry

log = logging.getLogger(__name__)

VECTORS_TABLE = "retrieval_vectors"
HNSW_MAX_DIMS = 2000
"""pgvector indexes ``vector`` columns of at most 2,000 dimensions (HNSW and IVFFlat)."""
VECTOR_MAX_DIMS = 16000
"""The ``vector`` type holds at most 16,000 dimensions; larger embeddings are not copied."""
APPROXIMATE_MIN_ROWS = 20_000
"""A namespace this large is searched through the HNSW index (when unfiltered); below it an
exact scan takes a few milliseconds and has recall 1 (the in-process path's threshold too)."""
EF_SEARCH_PER_HIT = 4
"""The graph's candidate list (``hnsw.ef_search``) per wanted row, as the in-process graph
oversamples (`llmasos.retrieval.vectors.ANN_OVERSAMPLE`)."""
EF_SEARCH_MAX = 1000
"""pgvector's upper bound for ``hnsw.ef_search``."""
REPAIR_BATCH = 1000
BULK_REPAIR_ROWS = 10_000
"""Repairing more rows than this drops the HNSW indexes first and builds them afterwards
(one build is much faster than as many single inserts into the graph)."""
COLUMNS = {"entry_id", "collection", "namespace", "dims", "embedding", "entry_xmin"}
TRIGGER = "trg_retrieval_entries_forget_vectors"
TRIGGER_FUNCTION = "retrieval_vectors_forget"


@functools.cache
def vectors_table() -> Table:
    """The derived table (its own metadata: it is not part of the migrated schema). Its
    ``entry_xmin`` (type ``xid``: the entry's row version it was copied from) is only used in
    SQL text."""
    from pgvector.sqlalchemy import VECTOR

    return Table(
        VECTORS_TABLE,
        MetaData(),
        Column("entry_id", Integer, primary_key=True),
        Column("collection", String(32), nullable=False),
        Column("namespace", String(64), nullable=False),
        Column("dims", Integer, nullable=False),
        Column("embedding", VECTOR(), nullable=False),
    )


def _hnsw_index(dims: int) -> str:
    return f"ix_{VECTORS_TABLE}_hnsw_{dims}"


def _usable(blob: bytes) -> bool:
    """Whether a stored embedding fits the ``vector`` type (float32, 1 to 16,000 of them)."""
    return 0 < len(blob) <= 4 * VECTOR_MAX_DIMS and len(blob) % 4 == 0


class PgVectors:
    """The pgvector side of one PostgreSQL database, shared by its `HybridIndex`es."""

    def __init__(self, version: str) -> None:
        self.version = version
        """The extension's version in this database (e.g. ``0.6.2``)."""
        self.indexed_dims: set[int] = set()
        """Dimensions whose HNSW index is known to exist."""

    # --- detection and the derived table ----------------------------------------------------

    @classmethod
    def detect(cls, session: Session) -> PgVectors | None:
        """The extension in this database, created if available and allowed; None (and one
        log line when it exists but cannot be used) otherwise."""
        installed = text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        version = session.scalar(installed)
        if version is None:
            available = session.scalar(
                text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            )
            if available is None:
                log.info("PostgreSQL has no pgvector extension: vectors are searched in process")
                return None
        try:
            import pgvector.sqlalchemy  # noqa: F401
        except ImportError:
            log.warning(
                "PostgreSQL has pgvector but the pgvector Python package is not installed: "
                "vectors are searched in process"
            )
            return None
        if version is None:
            try:
                with session.begin_nested():
                    session.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            except DBAPIError as error:
                reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
                log.warning(
                    "cannot create the pgvector extension (%s): vectors are searched in process; "
                    "a superuser can run CREATE EXTENSION vector in this database",
                    reason,
                )
                return None
            version = session.scalar(installed)
        log.info("vector search in PostgreSQL with pgvector %s", version)
        return cls(str(version))

    def prepare(self, session: Session) -> None:
        """Create the table, its trigger and indexes if missing, then repair it from the
        entries. Runs at start under the index's advisory lock. A table of another layout
        (an earlier version's) is dropped and rebuilt: it holds nothing but derived data."""
        columns = set(
            session.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = :t"
                ),
                {"t": VECTORS_TABLE},
            )
        )
        if columns and columns != COLUMNS:
            session.execute(text(f"DROP TABLE {VECTORS_TABLE}"))
            self.indexed_dims.clear()
        session.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {VECTORS_TABLE} ("
                "entry_id integer PRIMARY KEY, collection varchar(32) NOT NULL, "
                "namespace varchar(64) NOT NULL, dims integer NOT NULL, "
                "embedding vector NOT NULL, entry_xmin xid NOT NULL)"
            )
        )
        session.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS ix_{VECTORS_TABLE}_namespace "
                f"ON {VECTORS_TABLE} (dims, collection, namespace)"
            )
        )
        # Dynamic SQL, so a dropped table makes the trigger a no-op instead of an error.
        session.execute(
            text(
                f"CREATE OR REPLACE FUNCTION {TRIGGER_FUNCTION}() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                f"IF to_regclass('{VECTORS_TABLE}') IS NOT NULL THEN "
                f"EXECUTE 'DELETE FROM {VECTORS_TABLE} v USING gone WHERE v.entry_id = gone.id'; "
                "END IF; RETURN NULL; END $$"
            )
        )
        exists = session.scalar(
            text(
                "SELECT 1 FROM pg_trigger WHERE tgname = :name "
                "AND tgrelid = 'retrieval_entries'::regclass"
            ),
            {"name": TRIGGER},
        )
        if not exists:
            session.execute(
                text(
                    f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON retrieval_entries "
                    "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT "
                    f"EXECUTE FUNCTION {TRIGGER_FUNCTION}()"
                )
            )
        self._repair(session)
        for dims in self._dims_present(session):
            self._ensure_index(session, dims)

    def _dims_present(self, session: Session) -> list[int]:
        """The distinct dimensions in the table: a loose scan of the (dims, ...) index."""
        return [
            int(d)
            for d in session.scalars(
                text(
                    f"WITH RECURSIVE d AS (SELECT min(dims) AS dims FROM {VECTORS_TABLE} "
                    f"UNION ALL SELECT (SELECT min(dims) FROM {VECTORS_TABLE} "
                    "WHERE dims > d.dims) FROM d WHERE d.dims IS NOT NULL) "
                    "SELECT dims FROM d WHERE dims IS NOT NULL"
                )
            )
        ]

    def _has_index(self, session: Session, dims: int) -> bool:
        """Whether the HNSW index of ``dims`` exists (another process may have made it)."""
        if dims not in self.indexed_dims and session.scalar(
            text("SELECT 1 FROM pg_indexes WHERE tablename = :table AND indexname = :name"),
            {"table": VECTORS_TABLE, "name": _hnsw_index(dims)},
        ):
            self.indexed_dims.add(dims)
        return dims in self.indexed_dims

    def _ensure_index(self, session: Session, dims: int) -> None:
        """Create the HNSW index of ``dims`` unless it exists (the first write of a new
        embedding model's vectors; it then covers only those rows, so it is quick)."""
        if dims > HNSW_MAX_DIMS or self._has_index(session, dims):
            return
        session.execute(text("SELECT pg_advisory_xact_lock(7311002)"))
        session.execute(
            text(
                f"CREATE INDEX IF NOT EXISTS {_hnsw_index(dims)} ON {VECTORS_TABLE} "
                f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) WHERE dims = {dims}"
            )
        )
        # Not cached here: the writer's transaction may still roll back; `_has_index` finds
        # the index once it is there.

    def _repair(self, session: Session) -> int:
        """Make the table agree with the entries: drop rows whose entry is gone, is not the
        row version they were copied from (``entry_xmin``: an entry replaced in place, or a
        restored backup's entry under a known id) or lies elsewhere, then copy the embeddings
        of entries without a row. How many rows were copied."""
        session.execute(
            text(
                f"DELETE FROM {VECTORS_TABLE} v WHERE NOT EXISTS (SELECT 1 FROM "
                "retrieval_entries e WHERE e.id = v.entry_id AND e.xmin = v.entry_xmin "
                "AND e.collection = v.collection AND e.namespace = v.namespace)"
            )
        )
        table = vectors_table()
        entry = RetrievalEntry
        size = func.octet_length(entry.embedding)
        missing = list(
            session.scalars(
                select(entry.id)
                .where(
                    size.between(4, 4 * VECTOR_MAX_DIMS),
                    size % 4 == 0,
                    ~select(table.c.entry_id).where(table.c.entry_id == entry.id).exists(),
                )
                .order_by(entry.id)
            )
        )
        if not missing:
            return 0
        if len(missing) > BULK_REPAIR_ROWS:
            for name in session.scalars(
                text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = :table "
                    "AND indexname LIKE :pattern"
                ),
                {"table": VECTORS_TABLE, "pattern": f"ix_{VECTORS_TABLE}_hnsw_%"},
            ):
                session.execute(text(f'DROP INDEX IF EXISTS "{name}"'))
            self.indexed_dims.clear()
        copied = 0
        for start in range(0, len(missing), REPAIR_BATCH):
            rows = session.execute(
                select(entry.id, entry.embedding).where(
                    entry.id.in_(missing[start : start + REPAIR_BATCH])
                )
            ).all()
            copied += self._insert(session, [(int(i), e) for i, e in rows], index=False)
        log.info("rebuilt %d rows of the pgvector table from the retrieval entries", copied)
        return copied

    # --- writes ---------------------------------------------------------------------------

    def add(self, session: Session, rows: Iterable[tuple[int, bytes | None]]) -> int:
        """Copy (entry id, float32 embedding) of entries just written (flushed) in the
        writer's transaction; rows without a usable embedding are skipped. How many were
        copied."""
        return self._insert(session, list(rows), index=True)

    def restamp(self, session: Session, entry_ids: Sequence[int]) -> None:
        """Entries changed in place without a new embedding (re-blinded terms): their rows
        stay, stamped with the new row version so the repair at start keeps them."""
        if entry_ids:
            session.execute(
                text(
                    f"UPDATE {VECTORS_TABLE} v SET entry_xmin = e.xmin FROM retrieval_entries e "
                    "WHERE e.id = v.entry_id AND e.id = ANY(:ids)"
                ),
                {"ids": list(entry_ids)},
            )

    def _insert(
        self, session: Session, rows: Sequence[tuple[int, bytes | None]], *, index: bool
    ) -> int:
        from pgvector.sqlalchemy import VECTOR

        usable = [(i, blob) for i, blob in rows if blob is not None and _usable(blob)]
        if not usable:
            return 0
        if index:
            for dims in sorted({len(blob) // 4 for _, blob in usable}):
                self._ensure_index(session, dims)
        # Namespace and row version come from the entry itself, in the same statement.
        statement = text(
            f"INSERT INTO {VECTORS_TABLE} "
            "(entry_id, collection, namespace, dims, embedding, entry_xmin) "
            "SELECT e.id, e.collection, e.namespace, :dims, CAST(:embedding AS vector), e.xmin "
            "FROM retrieval_entries e WHERE e.id = :entry_id"
        ).bindparams(bindparam("embedding", type_=VECTOR()))
        session.execute(
            statement,
            [
                {
                    "entry_id": i,
                    "dims": len(blob) // 4,
                    "embedding": np.frombuffer(blob, dtype="<f4"),
                }
                for i, blob in usable
            ],
        )
        return len(usable)

    # --- search ---------------------------------------------------------------------------

    def search(
        self,
        session: Session,
        collection: str,
        namespace: str,
        query: Sequence[float],
        conditions: Sequence[ColumnElement[bool]],
        depth: int,
        *,
        approximate: bool,
    ) -> list[tuple[int, float]]:
        """The ``depth`` nearest (ref id, cosine similarity) of the namespace's entries that
        meet ``conditions`` (the search's filters, SQL on `RetrievalEntry`), best first.
        ``approximate`` allows the HNSW index for an unfiltered search."""
        dims = len(query)
        if dims == 0 or dims > VECTOR_MAX_DIMS or depth <= 0:
            return []
        indexable = dims <= HNSW_MAX_DIMS and not conditions
        if approximate and indexable and self._has_index(session, dims):
            session.execute(
                text(f"SET LOCAL hnsw.ef_search = {min(EF_SEARCH_MAX, EF_SEARCH_PER_HIT * depth)}")
            )
            hits = self._ranked(session, collection, namespace, query, conditions, depth, True)
            if len(hits) >= depth:
                return hits
        return self._ranked(session, collection, namespace, query, conditions, depth, False)

    @staticmethod
    def _ranked(
        session: Session,
        collection: str,
        namespace: str,
        query: Sequence[float],
        conditions: Sequence[ColumnElement[bool]],
        depth: int,
        indexed: bool,
    ) -> list[tuple[int, float]]:
        from pgvector.sqlalchemy import VECTOR

        table = vectors_table()
        dims = len(query)
        vector: Any = cast(bindparam("query", list(map(float, query)), VECTOR(dims)), VECTOR(dims))
        scope = (
            table.c.dims == dims,
            table.c.collection == collection,
            table.c.namespace == namespace,
        )
        if indexed:
            # The nearest rows of the table alone (the cast expression is what the partial
            # HNSW index covers), then their entries by id: a join or a condition on the
            # entries inside would let the planner drive the query from them, not the index.
            distance = table.c.embedding.cast(VECTOR(dims)).cosine_distance(vector)
            nearest = (
                select(table.c.entry_id, distance.label("distance"))
                .where(*scope)
                .order_by(distance)
                .limit(depth)
                .subquery()
            )
            statement = (
                select(RetrievalEntry.ref_id, nearest.c.distance)
                .join(nearest, RetrievalEntry.id == nearest.c.entry_id)
                .order_by(nearest.c.distance, nearest.c.entry_id)
            )
        else:
            # The bare column matches no index: the namespace's (filtered) rows are scored
            # and sorted exactly.
            distance = table.c.embedding.cosine_distance(vector)
            statement = (
                select(RetrievalEntry.ref_id, distance)
                .select_from(table.join(RetrievalEntry, RetrievalEntry.id == table.c.entry_id))
                .where(*scope, *conditions)
                .order_by(distance, table.c.entry_id)
                .limit(depth)
            )
        return [
            (int(ref), 1.0 - float(d))
            for ref, d in session.execute(statement)
            if d is not None and d == d  # a zero vector's distance is NaN: never a match
        ]
