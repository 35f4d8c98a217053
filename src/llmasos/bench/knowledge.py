"""The knowledge-base benchmark: ingestion throughput and search latency.

``python -m llmasos.bench.knowledge`` runs in this process against a fresh database in a
temporary home, with the real embedding model behind the kernel's embed syscall:

* **ingestion** — ``--docs`` generated Markdown documents (sections of paragraphs, about
  ``--pages`` pages of 3,000 characters in all) uploaded and added to a store; the
  background worker converts, chunks (the model's tokenizer), embeds and indexes them.
  Reported: pages/s, chunks/s and MB/s over the wall time until every file is completed.
* **search** — ``KnowledgeBase.search`` (query embedding, hybrid BM25 + cosine, fusion,
  decryption of the hits) on a store of ``--chunks`` chunks: p50/p95 ms, and the index alone
  (the query embedded beforehand). The chunks are bulk-loaded: the first ``--embed-limit``
  get their real embeddings, the rest those vectors with noise, so 10k chunks load in
  seconds (the search work is the same for any vectors of that shape).

* **relevance** — how well the answer floor (`RELEVANCE_FLOOR`, cosine) separates
  questions a document answers from questions none does: 8 short notes, 12 answerable and 12
  unanswerable questions, the gold note's cosine and the best cosine of each unanswerable
  question, and how many of each pass floors from 0.20 to 0.40.

It prints a table and writes the JSON report to ``--output``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from llmasos.bench.memory import LatencyResult, generated_fact, latency
from llmasos.config import Settings, load_settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.knowledge.chunking import Chunk
from llmasos.knowledge.ingest import insert_chunks
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models import open_model_store
from llmasos.storage import open_database
from llmasos.storage.schema import VectorStoreFile

PAGE_CHARS = 3000
QUERIES = [
    "who bought a map of Lisbon",
    "what did Maria repair last spring",
    "notes about the kitchen tap",
    "concert tickets every weekend",
    "the wool scarf in March",
    "chess set after work",
]


@dataclass
class IngestionResult:
    documents: int
    pages: float
    chunks: int
    megabytes: float
    seconds: float
    pages_per_second: float
    chunks_per_second: float
    megabytes_per_second: float


NOTES = [
    "The travel budget for the Lisbon offsite is 12000 euros, approved by Maria in March.",
    "We buy four laptops for the design team this quarter; each costs about 1500 euros.",
    "Tomatoes need full sun and water every morning. Basil grows well beside them.",
    "The office wifi password is changed every month by the IT team; ask Jonas for it.",
    "Our refund policy: customers may return products within 30 days with a receipt.",
    "The server room is cooled to 18 degrees; the backup generator is tested on Fridays.",
    "Onboarding: new employees get a buddy, a laptop and an account on the first day.",
    "The quarterly report is due on the 15th; finance collects numbers from each team.",
]
ANSWERABLE = [
    ("How much is the travel budget for Lisbon?", 0), ("Who approved the offsite budget?", 0),
    ("How many laptops will the design team get?", 1), ("How often should I water tomatoes?", 2),
    ("What grows well next to tomatoes?", 2), ("Who do I ask for the wifi password?", 3),
    ("How long do customers have to return a product?", 4),
    ("When is the generator tested?", 5), ("What does a new employee receive on day one?", 6),
    ("When is the quarterly report due?", 7), ("what temperature is the server room", 5),
    ("can I get my money back", 4),
]  # fmt: skip
UNANSWERABLE = [
    "What is the capital of Australia?", "How do I bake sourdough bread?",
    "Who won the 1998 football world cup?", "Explain quantum entanglement.",
    "What is the boiling point of mercury?", "Recommend a good science fiction novel.",
    "How many moons does Jupiter have?", "Translate hello into Japanese.",
    "What is the tallest mountain in Africa?", "How do vaccines work?",
    "What is the budget of NASA?", "How do I water a cactus?",
]  # fmt: skip


@dataclass
class RelevanceResult:
    answerable_gold_cosines: list[float]
    unanswerable_best_cosines: list[float]
    top1_correct: int
    floors: dict[str, dict[str, int]]


@dataclass
class KnowledgeBenchReport:
    database: str
    embedding_model: str
    embedding_runtime: str = "auto"
    ingestion: IngestionResult | None = None
    search: list[LatencyResult] = field(default_factory=list)
    relevance: RelevanceResult | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generated_document(number: int, chars: int) -> str:
    """A Markdown document of about ``chars`` characters: sections of paragraphs."""
    parts = [f"# Notes {number}"]
    n = number * 10_000
    size = 0
    while size < chars:
        parts.append(f"## Section {n}")
        for _ in range(3):
            paragraph = " ".join(generated_fact(n + i) + "." for i in range(4))
            parts.append(paragraph)
            size += len(paragraph)
            n += 4
    return "\n\n".join(parts)


async def bench_ingestion(kb: KnowledgeBase, docs: int, pages: float) -> IngestionResult:
    per_doc = int(pages * PAGE_CHARS / docs)
    texts = [generated_document(d, per_doc) for d in range(docs)]
    store = await kb.create_store(None, name="ingestion")
    # load the embedding model first: its load time is not ingestion
    await kb.engine.embed(kb.embedding_model, ["warm up"])
    await kb.engine.tokenize(kb.embedding_model, "warm up")
    started = time.perf_counter()
    for number, text in enumerate(texts):
        file = await asyncio.to_thread(
            kb.files.add_bytes, None, f"notes-{number}.md", text.encode(), "assistants"
        )
        await kb.add_file(None, store.id, file.id)
    await kb.worker.wait_idle()
    seconds = time.perf_counter() - started
    files = kb.list_files(None, store.id, limit=1000)
    failed = [f for f in files if f.status != "completed"]
    if failed:
        raise RuntimeError(f"{failed[0].filename}: {failed[0].error_message}")
    chunks = sum(f.chunks_total for f in files)
    total_chars = sum(len(t) for t in texts)
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    return IngestionResult(
        documents=docs,
        pages=round(total_chars / PAGE_CHARS, 1),
        chunks=chunks,
        megabytes=round(megabytes, 3),
        seconds=round(seconds, 2),
        pages_per_second=round(total_chars / PAGE_CHARS / seconds, 2),
        chunks_per_second=round(chunks / seconds, 2),
        megabytes_per_second=round(megabytes / seconds, 4),
    )


async def bulk_load(kb: KnowledgeBase, chunks: int, embed_limit: int) -> str:
    """A store holding ``chunks`` generated chunks (see the module's docstring)."""
    store = await kb.create_store(None, name="search")
    file = await asyncio.to_thread(kb.files.add_bytes, None, "bulk.md", b"bulk", "assistants")
    texts = [" ".join(generated_fact(n * 3 + i) + "." for i in range(3)) for n in range(chunks)]
    base = (await kb.engine.embed(kb.embedding_model, texts[: max(1, embed_limit)])).vectors
    rng = np.random.default_rng(11)
    now = datetime.now(UTC)

    def write() -> None:
        with kb.database.session(write=True) as session:
            row = VectorStoreFile(
                vector_store_id=store.id, file_id=file.id, user_id=None, status="completed",
                attributes={}, max_chunk_tokens=250, chunk_overlap_tokens=50,
                chunks_total=chunks, chunks_done=chunks, usage_bytes=0,
                created_at=now, updated_at=now,
            )  # fmt: skip
            session.add(row)
            session.flush()
            for start in range(0, chunks, 1000):
                batch = range(start, min(chunks, start + 1000))
                pieces = [Chunk(n, 0, len(texts[n]), texts[n], (), None, 60) for n in batch]
                vectors = []
                for n in batch:
                    vector = np.asarray(base[n % len(base)])
                    if n >= len(base):
                        vector = vector + rng.normal(0, 0.02, vector.shape)
                    vectors.append(vector.tolist())
                insert_chunks(session, kb.index, kb.cipher, row, pieces, vectors, now)

    await asyncio.to_thread(write)
    return store.id


async def bench_search(
    kb: KnowledgeBase, store_id: str, chunks: int, queries: int
) -> list[LatencyResult]:
    questions = [random.Random(n).choice(QUERIES) + f" {n % 7}" for n in range(queries)]
    await kb.search(None, [store_id], "warm up", max_num_results=5)
    full: list[float] = []
    for question in questions:
        started = time.perf_counter()
        await kb.search(None, [store_id], question, max_num_results=5)
        full.append(time.perf_counter() - started)
    vectors = (await kb.engine.embed(kb.embedding_model, questions)).vectors
    index_only: list[float] = []
    for question, vector in zip(questions, vectors, strict=True):
        started = time.perf_counter()
        kb.index.search(store_id, question, vector, k=5)
        index_only.append(time.perf_counter() - started)
    return [
        latency(f"search {chunks:,} chunks (with query embedding)", full),
        latency(f"search {chunks:,} chunks (index only)", index_only),
    ]


async def bench_relevance(kb: KnowledgeBase) -> RelevanceResult:
    def unit(vectors: list[list[float]]) -> np.ndarray:
        matrix = np.asarray(vectors, dtype=np.float64)
        norms: np.ndarray = np.linalg.norm(matrix, axis=1, keepdims=True)
        result: np.ndarray = matrix / norms
        return result

    notes = unit((await kb.engine.embed(kb.embedding_model, NOTES)).vectors)
    questions = [q for q, _ in ANSWERABLE] + UNANSWERABLE
    cosines = unit((await kb.engine.embed(kb.embedding_model, questions)).vectors) @ notes.T
    gold = [float(cosines[i, g]) for i, (_, g) in enumerate(ANSWERABLE)]
    best = [float(cosines[len(ANSWERABLE) + i].max()) for i in range(len(UNANSWERABLE))]
    top1 = sum(int(cosines[i].argmax() == g) for i, (_, g) in enumerate(ANSWERABLE))
    floors = {
        f"{floor:.2f}": {
            "answerable_kept": sum(c >= floor for c in gold),
            "unanswerable_passing": sum(c >= floor for c in best),
        }
        for floor in (0.20, 0.25, 0.30, 0.35, 0.40)
    }
    return RelevanceResult([round(c, 3) for c in gold], [round(c, 3) for c in best], top1, floors)


async def run_knowledge_bench(
    settings: Settings,
    *,
    docs: int,
    pages: float,
    chunks: int,
    queries: int,
    embed_limit: int,
    relevance: bool = True,
) -> KnowledgeBenchReport:
    engine = InProcessEngineClient(settings, open_model_store(settings))
    try:
        with open_database(settings) as database:
            kb = KnowledgeBase.open(settings, database, engine)
            report = KnowledgeBenchReport(
                database=database.display_url,
                embedding_model=settings.default_embedding_model,
                embedding_runtime=settings.embedding_runtime,
            )
            if docs:
                report.ingestion = await bench_ingestion(kb, docs, pages)
            if chunks:
                store_id = await bulk_load(kb, chunks, embed_limit)
                report.search = await bench_search(kb, store_id, chunks, queries)
            if relevance:
                report.relevance = await bench_relevance(kb)
            await kb.worker.close()
            return report
    finally:
        await engine.close()


def print_report(report: KnowledgeBenchReport, console: Console) -> None:
    if report.ingestion is not None:
        i = report.ingestion
        table = Table(title="Ingestion (convert, chunk, embed, index)")
        for header in ("docs", "pages", "chunks", "MB", "seconds", "pages/s", "chunks/s"):
            table.add_column(header, justify="right")
        table.add_row(
            str(i.documents), f"{i.pages:g}", str(i.chunks), f"{i.megabytes:g}",
            f"{i.seconds:g}", f"{i.pages_per_second:g}", f"{i.chunks_per_second:g}",
        )  # fmt: skip
        console.print(table)
    if report.search:
        table = Table(title="Search latency")
        for header in ("what", "queries", "p50 ms", "p95 ms", "mean ms"):
            table.add_column(header, justify="right" if header != "what" else "left")
        for r in report.search:
            table.add_row(r.label, str(r.count), f"{r.p50_ms:.1f}", f"{r.p95_ms:.1f}",
                          f"{r.mean_ms:.1f}")  # fmt: skip
        console.print(table)


def print_relevance(result: RelevanceResult, console: Console) -> None:
    table = Table(title="Relevance floor (cosine, all-MiniLM-L6-v2)")
    for header in ("floor", "answerable kept", "unanswerable passing"):
        table.add_column(header, justify="right")
    total_a, total_u = len(result.answerable_gold_cosines), len(result.unanswerable_best_cosines)
    for floor, row in result.floors.items():
        table.add_row(
            floor,
            f"{row['answerable_kept']}/{total_a}",
            f"{row['unanswerable_passing']}/{total_u}",
        )
    console.print(table)
    gold, best = result.answerable_gold_cosines, result.unanswerable_best_cosines
    console.print(
        f"answerable: gold cosine {min(gold):.3f}-{max(gold):.3f}, top-1 correct "
        f"{result.top1_correct}/{total_a}; unanswerable: best cosine {min(best):.3f}-"
        f"{max(best):.3f}",
        highlight=False,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llmasos.bench.knowledge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--docs", type=int, default=10, help="documents to ingest (0: skip)")
    parser.add_argument("--pages", type=float, default=30, help="pages (3,000 chars) in all")
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks to search (0: skip)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--embed-limit", type=int, default=64)
    parser.add_argument(
        "--no-relevance", action="store_true", help="skip the relevance-floor measurement"
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp home")
    parser.add_argument(
        "--embedding-runtime",
        choices=("auto", "torch"),
        default="auto",
        help="what embeds the queries: auto (ONNX Runtime where installed) or torch",
    )
    parser.add_argument("--output", type=Path, default=Path("knowledge-bench.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llmasos-kb-bench-") as home:
        settings = load_settings(
            home=Path(home),
            database_url=args.database_url,
            embedding_runtime=args.embedding_runtime,
        )
        report = asyncio.run(
            run_knowledge_bench(
                settings,
                docs=args.docs,
                pages=args.pages,
                chunks=args.chunks,
                queries=args.queries,
                embed_limit=args.embed_limit,
                relevance=not args.no_relevance,
            )
        )
    print_report(report, Console())
    if report.relevance is not None:
        print_relevance(report.relevance, Console())
    args.output.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    Console(stderr=True).print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
