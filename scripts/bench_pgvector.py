"""The pgvector path of the retrieval index against the in-process one, on random vectors.

Adds ``--rows`` random unit vectors (``--dims``) to one namespace through `HybridIndex.add`
(the HNSW index maintained by each write, 1,000 rows a transaction), then times ``--queries``
vector searches (k = 10) four ways: pgvector exact, pgvector through its HNSW index, the
in-process exact scan, and reports the index's recall@10 against the exact top 10; then the
in-process usearch graph's recall on the same vectors, and the repair at start after the
vector table is dropped. Random Gaussian vectors have no structure: the hardest case for any
graph (real embeddings cluster and are found more easily). Needs an empty database on a
PostgreSQL server that has pgvector, e.g. the pgserver wheel's (the dev extra):

    B=$(python -c 'import pgserver, os; print(os.path.dirname(pgserver.__file__))')/pginstall/bin
    $B/initdb -D /tmp/pgv -U postgres --auth=trust && $B/pg_ctl -D /tmp/pgv -l /tmp/pgv.log \\
        -o "-h 127.0.0.1 -p 55432 -k ''" -w start && $B/createdb -h 127.0.0.1 -p 55432 \\
        -U postgres bench
    .venv/bin/python scripts/bench_pgvector.py \\
        --database-url postgresql://postgres@127.0.0.1:55432/bench --rows 20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import text

from llmasos.config import Settings
from llmasos.retrieval import hybrid
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry
from llmasos.retrieval.terms import TermBlinder
from llmasos.retrieval.vectors import VectorCache
from llmasos.storage import open_database

KEY = b"k" * 32
K = 10


def percentiles(times: list[float]) -> str:
    times = sorted(times)
    return f"p50/p95 {times[len(times) // 2]:.1f}/{times[int(len(times) * 0.95)]:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(args.rows, args.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(args.queries, args.dims)).astype(np.float32)
    settings = Settings(home=Path(tempfile.mkdtemp()), database_url=args.database_url)
    with open_database(settings) as database:
        index = HybridIndex(database, "bench", TermBlinder(KEY))
        if index.pgvectors is None:
            raise SystemExit("this database has no pgvector: see the log line above")
        started = time.perf_counter()
        now = datetime.now(UTC)
        for start in range(0, args.rows, 1000):
            with database.session(write=True) as session:
                index.add(
                    session,
                    [
                        IndexEntry(ref_id=i, namespace="big", text="w", embedding=vectors[i],
                                   created_at=now)
                        for i in range(start, min(start + 1000, args.rows))
                    ],
                )  # fmt: skip
        took = time.perf_counter() - started
        print(f"add {args.rows} rows (HNSW maintained): {took:.1f} s, "
              f"{1000 * took / args.rows:.2f} ms/row")  # fmt: skip
        with database.session(write=True) as session:
            session.execute(text("ANALYZE retrieval_vectors"))
            session.execute(text("ANALYZE retrieval_entries"))
        exact_cache = VectorCache(ann=False)  # the exact scan, without a background graph
        in_process = HybridIndex(
            database, "bench", TermBlinder(KEY), vectors=exact_cache, native_vectors=False
        )

        def run(searcher: HybridIndex, threshold: int) -> tuple[list[list[int]], list[float]]:
            hybrid.APPROXIMATE_MIN_ROWS = threshold
            found, times = [], []
            for query in queries:
                started = time.perf_counter()
                hits = searcher.search("big", "", query, k=K, mode="vector")
                times.append(1000 * (time.perf_counter() - started))
                found.append([h.ref_id for h in hits])
            return found, times

        run(in_process, 10**9)  # loads the namespace into memory
        exact, exact_times = run(index, 10**9)
        graph, graph_times = run(index, 0)
        mine, mine_times = run(in_process, 10**9)
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(graph, exact, strict=True)])
        print(f"pgvector exact {percentiles(exact_times)}; pgvector HNSW "
              f"{percentiles(graph_times)}, recall@{K} {recall:.2f}; in-process exact "
              f"{percentiles(mine_times)}; exact paths agree: {mine == exact}")  # fmt: skip
        try:
            from usearch.index import Index
        except ImportError:
            print("usearch is not installed: no in-process graph figure")
        else:
            started = time.perf_counter()
            graph_index = Index(ndim=args.dims, metric="cos", dtype="f16", connectivity=16)
            graph_index.add(np.arange(args.rows), vectors, threads=2)
            built = time.perf_counter() - started
            wanted = 4 * max(index.candidates, 4 * K)  # what a search asks the graph for
            hits = []
            for query, best in zip(queries, exact, strict=True):
                keys = np.asarray(graph_index.search(query, wanted).keys, dtype=np.int64)
                top = keys[np.argsort(-(vectors[keys] @ query))[:K]]
                hits.append(len(set(top.tolist()) & set(best)) / K)
            print(f"usearch: built in {built:.1f} s, recall@{K} {np.mean(hits):.2f} "
                  f"with {wanted} candidates re-scored")  # fmt: skip
        with database.session(write=True) as session:
            session.execute(text("DROP TABLE retrieval_vectors"))
        hybrid._prepared.clear()
        started = time.perf_counter()
        HybridIndex(database, "bench", TermBlinder(KEY))
        print(f"repair at start after the table was dropped: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
