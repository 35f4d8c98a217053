"""The memory benchmark: add and search latency, retrieval quality, and "nothing lost".

Everything runs in this process against a fresh database in a temporary home (SQLite, or
the PostgreSQL a URL names) with the real embedding model behind the kernel's embed syscall:

* **add** — ``MemoryStore.add`` of distinct facts one at a time (embedding, duplicate check,
  encryption, one transaction): p50/p95 milliseconds.
* **search** — hybrid ``MemoryStore.search`` (query embedding, BM25 + cosine, fusion,
  decryption of the hits) over one user holding N items, for each N asked. The corpus is
  bulk-loaded (`MemoryStore.import_items`) with generated facts; its vectors are the real
  embeddings of the first items, repeated with noise beyond ``--embed-limit`` so large sizes
  load in seconds (the search work is the same for any vectors of the same shape).
* **quality** — the shipped conversation set (``bench/data/memory_sessions.json``): every
  turn is indexed, each question is searched, and evidence recall@5/@10 is reported for BM25
  alone, vectors alone and the hybrid.
* **nothing lost** — a real ``llmasos serve`` in its own process; C concurrent clients add
  and search over HTTP for D seconds; then every acknowledged item must be present exactly
  once.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from llmasos.config import Settings
from llmasos.kernel.interface import EngineClientInterface
from llmasos.memory.memories import MemoryOwner, MemoryStore, NewMemory
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry, RetrievalMode
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage import open_database

OWNER = MemoryOwner.for_user(None)
MODES: tuple[RetrievalMode, ...] = ("bm25", "vector", "hybrid")
Progress = Callable[[str], None]

_PEOPLE = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun"]
_VERBS = ["likes", "visited", "is learning", "bought", "fixed", "painted", "wrote about", "sold"]
_THINGS = [
    "a red bicycle",
    "the old lighthouse",
    "Spanish",
    "a sourdough starter",
    "a clock",
    "the garden shed",
    "a poem about rain",
    "two concert tickets",
    "a chess set",
    "the kitchen tap",
    "a wool scarf",
    "a map of Lisbon",
]
_WHEN = ["on Monday", "last spring", "in 2019", "every weekend", "after work", "in March"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def generated_fact(n: int) -> str:
    """A distinct, readable fact for item ``n``."""
    person = _PEOPLE[n % len(_PEOPLE)]
    verb = _VERBS[(n // 10) % len(_VERBS)]
    thing = _THINGS[(n // 80) % len(_THINGS)]
    when = _WHEN[(n // 960) % len(_WHEN)]
    return f"{person} {verb} {thing} {when} (note {n})"


@dataclass
class LatencyResult:
    label: str
    count: int
    p50_ms: float
    p95_ms: float
    mean_ms: float


@dataclass
class MemoryBenchReport:
    database: str
    embedding_model: str
    add: LatencyResult | None = None
    search: list[LatencyResult] = field(default_factory=list)
    quality: dict[str, dict[str, float]] = field(default_factory=dict)
    quality_set: dict[str, int] = field(default_factory=dict)
    compacted: dict[str, dict[str, float]] = field(default_factory=dict)
    """Evidence recall after compaction: recall label -> recall@k (k = 3, 5, 10)."""
    compacted_window: int = 0
    nothing_lost: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def latency(label: str, seconds: list[float]) -> LatencyResult:
    ms = [s * 1000 for s in seconds]
    return LatencyResult(
        label, len(ms), percentile(ms, 50), percentile(ms, 95), statistics.fmean(ms)
    )


def load_quality_set() -> dict[str, Any]:
    text = resources.files("llmasos.bench").joinpath("data/memory_sessions.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


async def bench_add(store: MemoryStore, count: int) -> LatencyResult:
    await store.add(OWNER, "warm-up: the benchmark starts")  # loads the embedding model
    times = []
    for n in range(count):
        started = time.perf_counter()
        await store.add(OWNER, f"Add benchmark fact {n}: {generated_fact(n + 7_000_000)}")
        times.append(time.perf_counter() - started)
    return latency("add (text, no extraction)", times)


async def fill(store: MemoryStore, target: int, embed_limit: int, progress: Progress) -> None:
    """Bulk-load generated facts until the owner holds ``target`` items."""
    have = store.count(OWNER)
    base: list[list[float]] = []
    rng = np.random.default_rng(7)
    batch = 500
    while have < target:
        size = min(batch, target - have)
        texts = [generated_fact(n) for n in range(have, have + size)]
        if have < embed_limit:
            vectors = await store.embed(texts)
            base.extend(vectors)
        else:
            if not base:
                base = await store.embed([generated_fact(n) for n in range(256)])
            picks = np.asarray([base[(have + i) % len(base)] for i in range(size)])
            vectors = (picks + rng.normal(0, 0.02, picks.shape)).tolist()
        items = [NewMemory(text, metadata={"batch": have // batch}) for text in texts]
        await asyncio.to_thread(store.import_items, OWNER, items, vectors)
        have += size
        progress(f"loaded {have:,}/{target:,} items")


async def bench_search(
    store: MemoryStore, size: int, queries: int
) -> tuple[LatencyResult, LatencyResult]:
    """End to end (query embedding, index, decryption) and the index alone (same queries,
    embeddings computed beforehand)."""
    rng = random.Random(size)
    words = [
        "bicycle",
        "lighthouse",
        "who is learning Spanish",
        "concert tickets",
        "garden",
        "poem about rain",
        "what did Chen buy",
        "map of Lisbon",
        "kitchen tap repair",
    ]
    texts = [f"{rng.choice(words)} {rng.choice(_WHEN)}" for _ in range(queries)]
    await store.search(OWNER, "warm-up query", k=10)  # loads the namespace's vectors
    # large namespaces get an HNSW graph in the background: time the steady state
    await asyncio.to_thread(store.index.vectors.wait_for_graphs)
    vectors = await store.embed(texts)
    times: list[float] = []
    index_times: list[float] = []

    async def end_to_end(query: str) -> None:
        started = time.perf_counter()
        await store.search(OWNER, query, k=10)
        times.append(time.perf_counter() - started)

    def index_only(query: str, vector: list[float]) -> None:
        started = time.perf_counter()
        store.index.search(OWNER.key, query, vector, k=10)
        index_times.append(time.perf_counter() - started)

    # the two alternate which goes first, so neither gets the other's warm caches
    for n, (query, vector) in enumerate(zip(texts, vectors, strict=True)):
        if n % 2:
            index_only(query, vector)
            await end_to_end(query)
        else:
            await end_to_end(query)
            index_only(query, vector)
    return (
        latency(f"search at {size:,} items", times),
        latency(f"  index only at {size:,}", index_times),
    )


async def bench_quality(
    engine: EngineClientInterface, settings: Settings, embedding_model: str | None
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    data = load_quality_set()
    turns = [(s["id"], t) for s in data["sessions"] for t in s["turns"]]
    ref_of = {turn["id"]: n for n, (_, turn) in enumerate(turns, start=1)}
    texts = [turn["text"] for _, turn in turns]
    vectors = (await engine.embed(embedding_model, texts)).vectors
    questions = data["questions"]
    query_vectors = (
        await engine.embed(embedding_model, [q["question"] for q in questions])
    ).vectors
    with open_database(settings) as database:
        index = HybridIndex(database, "bench-quality", TermBlinder(b"q" * 32))
        now = datetime.now(UTC)
        with database.session(write=True) as session:
            index.add(
                session,
                [
                    IndexEntry(ref, "maya", text, vector, now, metadata={"session": session_id})
                    for ref, text, vector, (session_id, _) in zip(
                        range(1, len(texts) + 1), texts, vectors, turns, strict=True
                    )
                ],
            )
        result: dict[str, dict[str, float]] = {}
        for mode in MODES:
            recalls: dict[int, list[float]] = {5: [], 10: []}
            for question, vector in zip(questions, query_vectors, strict=True):
                hits = index.search("maya", question["question"], vector, k=10, mode=mode)
                ranked = [hit.ref_id for hit in hits]
                wanted = {ref_of[e] for e in question["evidence"]}
                for k in recalls:
                    recalls[k].append(len(wanted & set(ranked[:k])) / len(wanted))
            result[mode] = {
                f"recall@{k}": round(statistics.fmean(v), 4) for k, v in recalls.items()
            }
    sizes = {"sessions": len(data["sessions"]), "turns": len(turns), "questions": len(questions)}
    return result, sizes


COMPACTED_WINDOW = 24
"""Turns kept verbatim after compaction in the after-compaction measure: about what a 2k
context holds of this set beside a summary."""


async def bench_compacted_recall(
    engine: EngineClientInterface,
    settings: Settings,
    embedding_model: str | None,
    window: int = COMPACTED_WINDOW,
) -> dict[str, dict[str, float]]:
    """Evidence recall after compaction: the set's sessions as one stored conversation whose
    newest ``window`` turns are still verbatim and the rest compacted. A question's evidence
    is available when it is in the window or recalled among the compacted turns; recall@k
    lets the recaller return k turns (`fit_context` asks for 3). Compared: words alone (what
    `fit_context` does without an index) and the conversation index (hybrid)."""
    from llmasos.memory.compaction import recall as recall_by_words
    from llmasos.memory.conversations import ConversationStore
    from llmasos.memory.items import message_item
    from llmasos.memory.recall import ConversationIndex
    from llmasos.storage.crypto import ContentCipher

    data = load_quality_set()
    turns = [t for s in data["sessions"] for t in s["turns"]]
    with open_database(settings) as database:
        store = ConversationStore(database, ContentCipher.from_settings(settings))
        index = ConversationIndex(
            database,
            engine,
            TermBlinder(b"c" * 32),
            embedding_model=embedding_model,
        )
        conversation = store.create(None)
        items = store.add_items(
            None,
            conversation.id,
            [message_item(str(t.get("role", "user")), t["text"]) for t in turns],
        )
        id_of = {turn["id"]: item.id for turn, item in zip(turns, items, strict=True)}
        compacted, verbatim = items[:-window], {item.id for item in items[-window:]}
        await index.index_items(None, conversation.id, compacted)
        result: dict[str, dict[str, float]] = {}
        for label in ("words alone (no index)", "conversation index (hybrid)"):
            recalls: dict[int, list[float]] = {3: [], 5: [], 10: []}
            for question in data["questions"]:
                wanted = {id_of[e] for e in question["evidence"]}
                for k in recalls:
                    if label.startswith("words"):
                        found = recall_by_words(question["question"], compacted, k)
                    else:
                        found = await index.recall(
                            None, conversation.id, question["question"], compacted, k
                        )
                    available = verbatim | {item.id for item in found}
                    recalls[k].append(len(wanted & available) / len(wanted))
            result[label] = {
                f"recall@{k}": round(statistics.fmean(v), 4) for k, v in recalls.items()
            }
    return result


async def bench_nothing_lost(
    settings: Settings, clients: int, seconds: float, progress: Progress
) -> dict[str, Any]:
    """A real ``llmasos serve`` (its own process, a scratch home, the same database engine)
    and concurrent HTTP clients adding and searching; afterwards every acknowledged item must
    be there exactly once, and nothing unacknowledged may have appeared."""
    import httpx

    from llmasos.bench.peers import llmasos_server

    extra = ["--database-url", settings.database_url] if settings.database_url else []
    acknowledged: dict[str, str] = {}
    merged: set[str] = set()
    counts = {"adds": 0, "searches": 0, "errors": 0}
    progress("starting llmasos serve")
    with llmasos_server(threads=settings.threads or None, extra_args=extra) as server:
        server.start()
        deadline = time.monotonic() + seconds

        async def client(number: int) -> None:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
                n = 0
                while time.monotonic() < deadline:
                    n += 1
                    if n % 3:
                        text = f"client {number} item {n}: {generated_fact(number * 100_000 + n)}"
                        response = await http.post("/v1/memories", json={"text": text})
                        if response.status_code != 200:
                            counts["errors"] += 1
                            continue
                        item = response.json()["data"][0]
                        if item["status"] == "created":
                            acknowledged[item["id"]] = text
                        else:  # judged the same fact as an earlier item: that one stands
                            merged.add(item["id"])
                        counts["adds"] += 1
                    else:
                        response = await http.post(
                            "/v1/memories/search", json={"query": f"client {number}", "k": 5}
                        )
                        counts["searches" if response.status_code == 200 else "errors"] += 1

        progress(f"nothing lost: {clients} clients for {seconds:.0f} s")
        await asyncio.gather(*(client(i) for i in range(clients)))
        progress(f"checking {len(acknowledged):,} acknowledged items")
        stored: list[dict[str, Any]] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as http:
            after: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if after:
                    params["after"] = after
                page = (await http.get("/v1/memories", params=params)).json()
                stored.extend(page["data"])
                if not page["has_more"]:
                    break
                after = page["data"][-1]["id"]
    by_id = {item["id"]: item["text"] for item in stored}
    texts = [item["text"] for item in stored]
    missing = [i for i, text in acknowledged.items() if by_id.get(i) != text]
    missing += [i for i in merged if i not in by_id]
    duplicated = len(texts) - len(set(texts)) + len(stored) - len(by_id)
    unexpected = sorted(set(by_id) - set(acknowledged) - merged)
    return {
        "clients": clients,
        "seconds": seconds,
        **counts,
        "acknowledged": len(acknowledged),
        "merged_as_duplicates": len(merged),
        "stored": len(stored),
        "missing": len(missing),
        "duplicated": duplicated,
        "unacknowledged_stored": len(unexpected),
        "ok": not missing and not duplicated and not unexpected and counts["errors"] == 0,
    }


async def run_memory_bench(
    settings: Settings,
    *,
    adds: int,
    sizes: list[int],
    queries: int,
    embed_limit: int,
    quality: bool,
    clients: int,
    seconds: float,
    progress: Progress,
) -> MemoryBenchReport:
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.storage.database import database_url, display_url

    with tempfile.TemporaryDirectory(prefix="llmasos-bench-memory-") as scratch:
        bench_settings = settings.model_copy(update={"home": Path(scratch)})
        # models come from the real home's store; the database and key live in scratch
        from llmasos.models import open_model_store

        models = open_model_store(settings)
        engine = InProcessEngineClient(bench_settings, models)
        report = MemoryBenchReport(
            database=display_url(database_url(bench_settings)),
            embedding_model=settings.default_embedding_model,
        )
        try:
            with open_database(bench_settings) as database:
                store = MemoryStore.open(bench_settings, database, engine)
                if adds:
                    progress(f"add x{adds}")
                    report.add = await bench_add(store, adds)
                    store.delete_all(OWNER)
                for size in sorted(sizes):
                    await fill(store, size, embed_limit, progress)
                    progress(f"search x{queries} at {size:,}")
                    report.search.extend(await bench_search(store, size, queries))
                if quality:
                    progress("retrieval quality")
                    report.quality, report.quality_set = await bench_quality(
                        engine, bench_settings, settings.default_embedding_model
                    )
                    progress("evidence recall after compaction")
                    report.compacted = await bench_compacted_recall(
                        engine, bench_settings, settings.default_embedding_model
                    )
                    report.compacted_window = COMPACTED_WINDOW
                if clients and seconds > 0:
                    report.nothing_lost = await bench_nothing_lost(
                        settings, clients, seconds, progress
                    )
        finally:
            await engine.close()
    return report
