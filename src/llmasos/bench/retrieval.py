"""Retrieval quality on real documents: ``python -m llmasos.bench.retrieval``.

The document set is the Python 3.11 standard library reference (317 HTML pages from Debian's
``python3.11-doc``, PSF licence; not shipped, the command says how to get it); the 70
questions (``bench/data/knowledge_questions.json``, written for this project) each name the
pages that answer them, and are phrased as a user would ask, mostly without the module's
name. Every page goes through the knowledge base's own path: `llmasos.knowledge.convert`,
`llmasos.knowledge.chunking` (sizes estimated generously, then every chunk checked with the
embedding model's tokenizer through the kernel, and the page re-cut smaller if one is over
the model's 256 tokens), embeddings
from the kernel's embed syscall, one namespace of the shared hybrid index. Each question is
then answered by

- a keyword baseline: pages ranked by how many of the question's words (stop words dropped,
  stemmed as the index stems them) they contain, as ``grep -l -i`` per word would count;
- BM25 alone, vectors alone, and the hybrid (reciprocal rank fusion) over chunks, a page
  ranked by its best chunk;

and scored by recall@5 (a gold page among the first five pages) and MRR (1 / rank of the
first gold page, 0 past 20). It prints a table and writes JSON (``--out``).

``--graph`` adds hybrid + graph (graph mode of `KnowledgeBase.search`): the embedded chat
model extracts triples (`ModelExtractor`, the JSON schema of ``kg build``) from chunks, names
are merged as a build merges them, and each question's hybrid ranking is fused with the
chunks the graph reaches from its best hits (`graph_ranking`, `fuse_rankings`). Extraction
costs seconds per chunk on a CPU, so it reads at most ``--graph-chunks`` chunks: the
hybrid top hits of the questions, best ranks first. ``--limit N`` keeps the first N
questions and indexes only their gold pages and N other pages (the small-subset mode).
``--name-pairs`` instead prints the cosine of name pairs that are one entity and of pairs
that are two, the figures behind the graph's merge threshold (`MERGE_SIMILARITY`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from llmasos.bench.metrics import percentile
from llmasos.config import Settings, load_settings
from llmasos.knowledge.chunking import chunk_document
from llmasos.knowledge.convert import convert
from llmasos.knowledge.graph import (
    MERGE_SIMILARITY,
    Edge,
    Entity,
    Graph,
    cosine,
    fuse_rankings,
    graph_ranking,
    normalize_name,
    resolve_names,
)
from llmasos.knowledge.graphextract import ModelExtractor, Triple
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry, RetrievalMode
from llmasos.retrieval.terms import TermBlinder, words
from llmasos.storage import open_database

MODES: tuple[RetrievalMode, ...] = ("bm25", "vector", "hybrid")
DEPTH = 20
CHUNK_TOKENS = 200
"""Chunk size for the embedding model's 256-token window, leaving room for its specials."""
EMBED_LIMIT = 254
"""all-MiniLM-L6-v2 reads 256 tokens, two of them its own markers."""
NAMESPACE = "python-library"


def load_questions() -> dict[str, Any]:
    data = resources.files("llmasos.bench.data").joinpath("knowledge_questions.json")
    return dict(json.loads(data.read_text(encoding="utf-8")))


def page_ranking(chunk_pages: Sequence[str]) -> list[str]:
    """Pages in the order of their best chunk."""
    return list(dict.fromkeys(chunk_pages))


def score(ranking: Sequence[str], gold: set[str]) -> tuple[float, float]:
    """(recall@5 as 0/1, reciprocal rank of the first gold page within `DEPTH`)."""
    hit5 = 1.0 if gold & set(ranking[:5]) else 0.0
    for rank, page in enumerate(ranking[:DEPTH], start=1):
        if page in gold:
            return hit5, 1.0 / rank
    return hit5, 0.0


def keyword_ranking(query: str, page_words: dict[str, set[str]]) -> list[str]:
    """Pages by the number of distinct query words they contain (ties by name)."""
    terms = set(words(query))
    counted = [(len(terms & vocabulary), page) for page, vocabulary in page_words.items()]
    return [page for hits, page in sorted(counted, key=lambda c: (-c[0], c[1])) if hits]


class Corpus:
    """The indexed pages: the index, which page each chunk came from, each page's words."""

    def __init__(self, index: HybridIndex) -> None:
        self.index = index
        self.page_of: dict[int, str] = {}
        self.page_words: dict[str, set[str]] = {}
        self.query_vectors: list[list[float]] = []
        self.stats: dict[str, Any] = {}
        self.text_of: dict[int, str] = {}
        self.graph: Graph | None = None


def subset(
    questions: list[dict[str, Any]], pages: list[Path], limit: int | None
) -> tuple[list[dict[str, Any]], list[Path]]:
    """The first ``limit`` questions, their gold pages and ``limit`` other pages (all with
    no limit)."""
    if limit is None:
        return questions, pages
    chosen = questions[:limit]
    gold = {page for q in chosen for page in q["gold"]}
    others = [p for p in pages if p.name not in gold][:limit]
    return chosen, [p for p in pages if p.name in gold] + others


SAME_ENTITY = [
    ("Acme Corporation", "Acme Corp"), ("New York City", "New York"),
    ("United States", "United States of America"), ("SQLite database", "SQLite"),
    ("Python Software Foundation", "Python Foundation"),
    ("Marie Curie", "Marie Skłodowska-Curie"), ("hashlib module", "hashlib"),
    ("JSON encoder", "JSONEncoder"), ("Lisbon offsite", "Lisbon offsite meeting"),
    ("IBM", "International Business Machines"),
]  # fmt: skip
TWO_ENTITIES = [
    ("Maria", "Mario"), ("Pierre Curie", "Marie Curie"), ("Paris", "London"),
    ("Java", "JavaScript"), ("Python 2", "Python 3"), ("Apple", "Microsoft"),
    ("encoder", "decoder"), ("Lisbon", "Porto"), ("Acme Corp", "Acme Labs"), ("hashlib", "hmac"),
]  # fmt: skip


async def name_pairs(settings: Settings) -> list[dict[str, Any]]:
    """Cosine of each pair's normalized names, through the kernel's embed syscall."""
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.models import open_model_store

    engine = InProcessEngineClient(settings, open_model_store(settings))
    rows: list[dict[str, Any]] = []
    try:
        for same, pairs in ((True, SAME_ENTITY), (False, TWO_ENTITIES)):
            names = [normalize_name(name) for pair in pairs for name in pair]
            vectors = (await engine.embed(settings.default_embedding_model, names)).vectors
            for i, (a, b) in enumerate(pairs):
                score = cosine(vectors[2 * i], vectors[2 * i + 1])
                rows.append({"a": a, "b": b, "same": same, "cosine": round(score, 3)})
    finally:
        await engine.close()
    return rows


def graph_of(triples: dict[int, list[Triple]], vectors: dict[str, list[float]]) -> Graph:
    """A graph from each chunk's triples, names merged as `KnowledgeGraph` merges them."""
    merged = resolve_names({}, vectors)
    ids: dict[str, int] = {}
    entities: list[Entity] = []
    edges: list[Edge] = []

    def entity(name: str, kind: str) -> int:
        key = merged.get(normalize_name(name), normalize_name(name))
        if key not in ids:
            ids[key] = len(entities)
            entities.append(Entity(ids[key], name, kind))
        return ids[key]

    for chunk, found in triples.items():
        for t in found:
            subject, obj = entity(t.subject, t.subject_type), entity(t.object, t.object_type)
            edges.append(Edge(len(edges), subject, t.predicate, obj, chunk))
    return Graph.of(entities, edges)


async def extract_graph(
    engine: Any, model: str | None, corpus: Corpus, questions: list[dict[str, Any]],
    chunks: int, progress: Progress,
) -> None:  # fmt: skip
    """Triples from the hybrid top hits of the questions (best ranks first), at most
    ``chunks`` of them, into ``corpus.graph``."""
    rankings = [
        [h.ref_id for h in corpus.index.search(NAMESPACE, q["question"], v, k=20)]
        for q, v in zip(questions, corpus.query_vectors, strict=True)
    ]
    chosen: list[int] = []
    for rank in range(20):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank] not in chosen and len(chosen) < chunks:
                chosen.append(ranking[rank])
    extractor = ModelExtractor(engine)
    triples: dict[int, list[Triple]] = {}
    task = progress.add_task("extracting triples", total=len(chosen))
    started = time.perf_counter()
    for ref in chosen:
        triples[ref] = await extractor.extract(corpus.text_of[ref])
        progress.advance(task)
    names = list(dict.fromkeys(normalize_name(n) for ts in triples.values()
                               for t in ts for n in (t.subject, t.object)))  # fmt: skip
    vectors = (await engine.embed(model, names)).vectors if names else []
    corpus.graph = graph_of(triples, dict(zip(names, vectors, strict=True)))
    corpus.stats.update(
        graph_chunks=len(chosen),
        graph_triples=sum(len(t) for t in triples.values()),
        graph_chunks_with_triples=sum(1 for t in triples.values() if t),
        graph_entities=len(corpus.graph.connected()),
        graph_seconds=round(time.perf_counter() - started, 1),
        graph_model=extractor.model or "",
    )


async def build(
    settings: Settings,
    scratch: Settings,
    directory: Path,
    progress: Progress,
    *,
    limit: int | None = None,
    graph_chunks: int = 0,
) -> Corpus:
    """Index the pages of ``directory`` (see `subset`) into a database in ``scratch``'s
    home, with the models of ``settings``' store; with ``graph_chunks``, extract a graph."""
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.models import open_model_store

    engine = InProcessEngineClient(scratch, open_model_store(settings))
    model = settings.default_embedding_model
    questions, pages = subset(
        load_questions()["questions"], sorted(directory.glob("*.html")), limit
    )
    corpus = Corpus(HybridIndex(open_database(scratch), "bench-knowledge", TermBlinder(b"b" * 32)))
    started = time.perf_counter()
    chunks_total = 0

    def count(text: str) -> int:
        """An overestimate of the embedding tokenizer's count (chunks are checked exactly)."""
        return max(len(text.split()) * 2, len(text) // 3) + 2

    try:
        task = progress.add_task("indexing pages", total=len(pages))
        for page in pages:
            document = convert(page.read_bytes(), page.name)
            corpus.page_words[page.name] = set(words(document.text))
            size = CHUNK_TOKENS
            while True:  # pieces cut inside a block are estimated: check the chunks exactly
                chunks = chunk_document(document, max_tokens=size, count_tokens=count)
                exact = [len(await engine.tokenize(model, c.text)) for c in chunks]
                if max(exact) <= EMBED_LIMIT or size <= 32:
                    break
                size = int(size * 0.8)
            vectors = (await engine.embed(model, [c.text for c in chunks])).vectors
            entries = []
            for chunk, vector in zip(chunks, vectors, strict=True):
                ref = len(corpus.page_of) + 1
                corpus.page_of[ref] = page.name
                corpus.text_of[ref] = chunk.text
                entries.append(IndexEntry(ref, NAMESPACE, chunk.text, vector, datetime.now(UTC)))
            with corpus.index.database.session(write=True) as session:
                corpus.index.add(session, entries)
            chunks_total += len(chunks)
            progress.advance(task)
        elapsed = time.perf_counter() - started
        corpus.stats = {
            "pages": len(pages),
            "chunks": chunks_total,
            "seconds": round(elapsed, 1),
            "pages_per_s": round(len(pages) / elapsed, 2),
            "chunks_per_s": round(chunks_total / elapsed, 1),
        }
        corpus.query_vectors = (
            await engine.embed(model, [q["question"] for q in questions])
        ).vectors
        if graph_chunks:
            await extract_graph(engine, None, corpus, questions, graph_chunks, progress)
    finally:
        await engine.close()
    return corpus


def evaluate(
    corpus: Corpus, limit: int | None = None
) -> tuple[dict[str, dict[str, float]], list[float]]:
    questions = load_questions()["questions"][:limit]
    index, page_of = corpus.index, corpus.page_of
    names = ("keywords", *MODES, *(("hybrid+graph",) if corpus.graph is not None else ()))
    results: dict[str, dict[str, list[float]]] = {n: {"recall@5": [], "mrr": []} for n in names}
    latencies: list[float] = []
    for question, vector in zip(questions, corpus.query_vectors, strict=True):
        gold = set(question["gold"])
        rankings = {"keywords": keyword_ranking(question["question"], corpus.page_words)}
        for mode in MODES:
            started = time.perf_counter()
            hits = index.search(NAMESPACE, question["question"], vector, k=60, mode=mode)
            if mode == "hybrid":
                latencies.append((time.perf_counter() - started) * 1000)
            rankings[mode] = page_ranking([page_of[h.ref_id] for h in hits])
            if mode == "hybrid" and corpus.graph is not None:
                refs = [h.ref_id for h in hits]
                fused = fuse_rankings(refs, graph_ranking(corpus.graph, refs))
                rankings["hybrid+graph"] = page_ranking([page_of[r] for r in fused])
        for name, ranking in rankings.items():
            hit, reciprocal = score(ranking, gold)
            results[name]["recall@5"].append(hit)
            results[name]["mrr"].append(reciprocal)
    summary = {
        name: {metric: round(statistics.fmean(values), 3) for metric, values in metrics.items()}
        for name, metrics in results.items()
    }
    return summary, latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m llmasos.bench.retrieval", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--documents", type=Path, default=Path(load_questions()["documents_dir"]))
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument(
        "--limit", type=int, help="the first N questions, their gold pages and N other pages"
    )
    parser.add_argument(
        "--graph", action="store_true", help="also hybrid + graph (the chat model extracts)"
    )
    parser.add_argument(
        "--graph-chunks", type=int, default=40, help="chunks the extractor reads (default 40)"
    )
    parser.add_argument(
        "--name-pairs", action="store_true", help="only the entity-merge figures, then stop"
    )
    args = parser.parse_args(argv)
    console = Console()
    if args.name_pairs:
        rows = asyncio.run(name_pairs(load_settings()))
        table = Table(title=f"Name pairs (merge at cosine >= {MERGE_SIMILARITY})")
        for column in ("pair", "one entity", "cosine", "merged"):
            table.add_column(column)
        for row in rows:
            merged = row["cosine"] >= MERGE_SIMILARITY
            table.add_row(f"{row['a']} / {row['b']}", str(row["same"]), str(row["cosine"]),
                          "yes" if merged else "no")  # fmt: skip
        console.print(table)
        if args.out:
            args.out.write_text(
                json.dumps({"threshold": MERGE_SIMILARITY, "pairs": rows}, indent=2) + "\n"
            )
        return
    if not args.documents.is_dir():
        console.print(
            f"no documents at {args.documents}: install them with "
            "`sudo apt-get install python3.11-doc` (Debian/Ubuntu) or pass --documents DIR"
        )
        raise SystemExit(2)
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="llmasos-bench-retrieval-") as scratch:
        scratch_settings = settings.model_copy(update={"home": Path(scratch)})
        with Progress(console=console) as progress:
            corpus = asyncio.run(
                build(
                    settings,
                    scratch_settings,
                    args.documents,
                    progress,
                    limit=args.limit,
                    graph_chunks=args.graph_chunks if args.graph else 0,
                )
            )
        summary, latencies = evaluate(corpus, args.limit)
        corpus.index.database.close()
    stats = corpus.stats
    table = Table(title=f"Retrieval on {stats['pages']} pages, {len(latencies)} questions")
    for column in ("method", "recall@5", "MRR"):
        table.add_column(column)
    for name, values in summary.items():
        table.add_row(name, f"{values['recall@5']:.3f}", f"{values['mrr']:.3f}")
    console.print(table)
    console.print(
        f"indexed {stats['chunks']} chunks in {stats['seconds']} s "
        f"({stats['pages_per_s']} pages/s, {stats['chunks_per_s']} chunks/s); hybrid search "
        f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms"
    )
    if corpus.graph is not None:
        console.print(
            f"graph: {stats['graph_triples']} triples from {stats['graph_chunks_with_triples']}"
            f" of {stats['graph_chunks']} chunks read, {stats['graph_entities']} entities, "
            f"{stats['graph_seconds']} s ({stats['graph_model']})"
        )
    if args.out:
        report = {
            "set": {"pages": stats["pages"], "questions": len(latencies), "limit": args.limit},
            "ingestion": stats,
            "quality": summary,
            "hybrid_search_ms": {
                "p50": round(percentile(latencies, 50), 2),
                "p95": round(percentile(latencies, 95), 2),
            },
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
