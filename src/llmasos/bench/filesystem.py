"""The file-system benchmark: rollback correctness, and semantic find against grep.

``python -m llmasos.bench.filesystem [--sequences N] [--steps N] [--seed S] [--json FILE]``
runs in this process against a fresh database and blob directory in a temporary home, with
the real embedding model behind the kernel's embed syscall, and prints two tables:

* **rollback** — N random sequences of writes, moves, deletes and rollbacks (to the previous
  version or a random earlier one) on one file each, checked against a model of what each
  version held. After every rollback: the bytes read back are byte-identical to the restored
  version's, and the index answers from it — the restored text's marker word finds the file
  (and the best hit's snippet holds it), the marker of the text rolled away from does not.
* **find** — the shipped set ``bench/data/fs_find.json`` (24 short files and 18 queries that
  paraphrase their gold file, written for this benchmark; the large retrieval set of the
  knowledge benchmark is separate): hit@1, hit@3 and MRR for a grep-like keyword baseline
  (files ranked by how many of the query's words they contain, case-insensitive, stop words
  dropped — what ``grep -ci`` per word gives) and for ``fs find`` in bm25, vector and hybrid
  modes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from llmasos.config import Settings, load_settings
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.fstypes import FileOwner
from llmasos.retrieval.interface import RetrievalMode
from llmasos.retrieval.terms import STOP_WORDS

OWNER = FileOwner.for_user(None)
WORDS = [
    *("river", "stone", "lantern", "orchard", "meadow", "harbor", "violin", "copper"),
    *("saffron", "glacier", "thunder", "cedar", "falcon", "pebble", "canyon", "velvet"),
    *("ember", "willow", "quartz", "marble"),
]


@dataclass
class RollbackResult:
    sequences: int = 0
    operations: int = 0
    rollbacks: int = 0
    byte_identical: int = 0
    index_restored: int = 0
    """Rollbacks after which the restored text's marker found the file, in the best hit."""
    index_forgot: int = 0
    """Rollbacks after which the rolled-away text's marker no longer found the file."""
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def percent(self, count: int) -> float:
        return 100.0 * count / self.rollbacks if self.rollbacks else float("nan")


@dataclass
class FindResult:
    method: str
    hit_at_1: float
    hit_at_3: float
    mrr: float


@dataclass
class FilesystemBenchReport:
    embedding_model: str
    rollback: RollbackResult
    find: list[FindResult]
    find_set: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        rollback = asdict(self.rollback)
        rollback["byte_identical_percent"] = self.rollback.percent(self.rollback.byte_identical)
        rollback["index_restored_percent"] = self.rollback.percent(self.rollback.index_restored)
        rollback["index_forgot_percent"] = self.rollback.percent(self.rollback.index_forgot)
        return {
            "benchmark": "filesystem",
            "embedding_model": self.embedding_model,
            "rollback": rollback,
            "find": [asdict(r) for r in self.find],
            "find_set": self.find_set,
        }


# --- rollback ------------------------------------------------------------------------------


def version_text(rng: random.Random, marker: str) -> bytes:
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20)))
    return f"{body}\n\nmarker {marker}\n".encode()


async def marker_finds(fs: FileSystem, marker: str, path: str) -> tuple[bool, bool]:
    """(the file is among the word matches of ``marker``, its best hybrid hit shows it)."""
    lexical = await fs.find(OWNER, marker, k=5, mode="bm25")
    hybrid = await fs.find(OWNER, marker, k=5)
    in_words = any(hit.path == path for hit in lexical)
    shown = any(hit.path == path and marker in hit.snippet for hit in hybrid[:1])
    return in_words, shown


async def one_sequence(
    fs: FileSystem, number: int, steps: int, rng: random.Random, result: RollbackResult
) -> None:
    """Random operations on one file; ``states`` mirrors what each version holds."""
    path = f"/seq{number}/file.txt"
    states: list[tuple[str, bytes | None, str]] = []  # (path, content or None if deleted, marker)
    marker = f"mk{number}v1"
    content = version_text(rng, marker)
    await fs.put_bytes(OWNER, path, content)
    states.append((path, content, marker))
    result.operations += 1
    for step in range(steps):
        current_path, current, current_marker = states[-1]
        choice = rng.random()
        if current is None:
            choice = 0.9  # a deleted file: roll it back
        if choice < 0.4:
            marker = f"mk{number}v{len(states) + 1}"
            content = version_text(rng, marker)
            await fs.put_bytes(OWNER, current_path, content)
            states.append((current_path, content, marker))
        elif choice < 0.55:
            target = f"/seq{number}/moved{step}.txt"
            await fs.move(OWNER, current_path, target)
            states.append((target, current, current_marker))
        elif choice < 0.7 and len(states) > 1:
            await fs.delete(OWNER, current_path)
            states.append((current_path, None, current_marker))
        else:
            if len(states) < 2:
                continue
            to = None if rng.random() < 0.5 else rng.randint(1, len(states) - 1)
            target_index = (len(states) - 2) if to is None else (to - 1)
            restored_path, restored, restored_marker = states[target_index]
            info = await fs.rollback(OWNER, current_path, to)
            states.append((restored_path, restored, restored_marker))
            result.rollbacks += 1
            await check_rollback(
                fs, result, info.path, restored, restored_marker, current, current_marker
            )
        result.operations += 1


async def check_rollback(
    fs: FileSystem,
    result: RollbackResult,
    path: str,
    restored: bytes | None,
    restored_marker: str,
    previous: bytes | None,
    previous_marker: str,
) -> None:
    if restored is None:  # rolled back to a deletion: nothing readable, nothing found
        gone = not any(h.path == path for h in await fs.find(OWNER, restored_marker, mode="bm25"))
        result.byte_identical += 1
        result.index_restored += int(gone)
        result.index_forgot += int(gone)
        return
    data = await asyncio.to_thread(fs.read, OWNER, path)
    if data == restored:
        result.byte_identical += 1
    else:
        result.failures.append(f"{path}: bytes differ after rollback")
    in_words, shown = await marker_finds(fs, restored_marker, path)
    if in_words and shown:
        result.index_restored += 1
    else:
        result.failures.append(f"{path}: restored marker {restored_marker} not found")
    if previous is None or previous == restored or previous_marker == restored_marker:
        result.index_forgot += 1
        return
    lexical = await fs.find(OWNER, previous_marker, k=5, mode="bm25")
    if any(hit.path == path for hit in lexical):
        result.failures.append(f"{path}: rolled-away marker {previous_marker} still found")
    else:
        result.index_forgot += 1


async def bench_rollback(fs: FileSystem, sequences: int, steps: int, seed: int) -> RollbackResult:
    rng = random.Random(seed)
    result = RollbackResult(sequences=sequences)
    started = time.perf_counter()
    for number in range(sequences):
        await one_sequence(fs, number, steps, rng, result)
    result.seconds = time.perf_counter() - started
    return result


# --- find against grep -----------------------------------------------------------------------


def load_find_set() -> dict[str, Any]:
    text = resources.files("llmasos.bench").joinpath("data/fs_find.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def keyword_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP_WORDS and len(w) > 1]


def grep_rank(files: dict[str, str], query: str) -> list[str]:
    """Files holding at least one query word, by how many distinct query words they hold."""
    wanted = set(keyword_words(query))
    scored = []
    for path, text in files.items():
        haystack = (path + " " + text).lower()
        count = sum(1 for word in wanted if word in haystack)
        if count:
            scored.append((-count, path))
    return [path for _, path in sorted(scored)]


def score(rankings: list[tuple[list[str], str]], method: str) -> FindResult:
    hit1 = hit3 = reciprocal = 0.0
    for ranked, gold in rankings:
        if ranked[:1] == [gold]:
            hit1 += 1
        if gold in ranked[:3]:
            hit3 += 1
        if gold in ranked:
            reciprocal += 1.0 / (ranked.index(gold) + 1)
    n = len(rankings)
    return FindResult(method, hit1 / n, hit3 / n, reciprocal / n)


async def bench_find(fs: FileSystem) -> tuple[list[FindResult], dict[str, int]]:
    data = load_find_set()
    files: dict[str, str] = data["files"]
    for path, text in files.items():
        await fs.put_bytes(OWNER, path, text.encode())
    queries = [(q["query"], q["gold"]) for q in data["queries"]]
    results = [score([(grep_rank(files, q), gold) for q, gold in queries], "grep (keywords)")]
    modes: tuple[RetrievalMode, ...] = ("bm25", "vector", "hybrid")
    for mode in modes:
        rankings = []
        for query, gold in queries:
            hits = await fs.find(OWNER, query, k=10, mode=mode)
            rankings.append(([hit.path for hit in hits], gold))
        results.append(score(rankings, f"fs find ({mode})"))
    return results, {"files": len(files), "queries": len(queries)}


# --- the run ---------------------------------------------------------------------------------


async def run_filesystem_bench(
    settings: Settings, *, sequences: int, steps: int, seed: int
) -> FilesystemBenchReport:
    from llmasos.kernel.client import InProcessEngineClient
    from llmasos.models import open_model_store
    from llmasos.storage import open_database

    with tempfile.TemporaryDirectory(prefix="llmasos-bench-fs-") as scratch:
        bench_settings = settings.model_copy(update={"home": Path(scratch), "database_url": None})
        engine = InProcessEngineClient(bench_settings, open_model_store(settings))
        try:
            with open_database(bench_settings) as database:
                fs = FileSystem.open(bench_settings, database, engine)
                rollback = await bench_rollback(fs, sequences, steps, seed)
            with open_database(
                bench_settings.model_copy(update={"home": Path(scratch) / "find"})
            ) as database:
                find_settings = bench_settings.model_copy(update={"home": Path(scratch) / "find"})
                fs = FileSystem.open(find_settings, database, engine)
                find, find_set = await bench_find(fs)
        finally:
            await engine.close()
    return FilesystemBenchReport(settings.default_embedding_model, rollback, find, find_set)


def print_report(report: FilesystemBenchReport) -> None:
    r = report.rollback
    print(
        f"rollback: {r.sequences} random sequences, {r.operations} operations, "
        f"{r.rollbacks} rollbacks, {r.seconds:.1f} s"
    )
    print(
        f"  {'byte-identical content':<40} {r.byte_identical:>5}/{r.rollbacks}  "
        f"{r.percent(r.byte_identical):6.1f}%"
    )
    print(
        f"  {'index finds the restored version':<40} {r.index_restored:>5}/{r.rollbacks}  "
        f"{r.percent(r.index_restored):6.1f}%"
    )
    print(
        f"  {'index forgot the rolled-away version':<40} {r.index_forgot:>5}/{r.rollbacks}  "
        f"{r.percent(r.index_forgot):6.1f}%"
    )
    for failure in r.failures[:10]:
        print(f"  FAILED: {failure}")
    s = report.find_set
    print(
        f"\nfind: {s['files']} files, {s['queries']} paraphrased queries ({report.embedding_model})"
    )
    print(f"  {'method':<20} {'hit@1':>7} {'hit@3':>7} {'MRR':>7}")
    for f in report.find:
        print(f"  {f.method:<20} {f.hit_at_1:7.3f} {f.hit_at_3:7.3f} {f.mrr:7.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmasos.bench.filesystem", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sequences", type=int, default=50, help="random edit sequences")
    parser.add_argument("--steps", type=int, default=12, help="operations per sequence")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    report = asyncio.run(
        run_filesystem_bench(
            load_settings(), sequences=args.sequences, steps=args.steps, seed=args.seed
        )
    )
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if not report.rollback.failures else 1


if __name__ == "__main__":
    sys.exit(main())
