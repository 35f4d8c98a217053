"""The file-system benchmark's parts: the rollback checker on random sequences (word-count
embeddings, both databases) and the grep baseline's ranking."""

from __future__ import annotations

import asyncio

from llmasos.bench.filesystem import bench_rollback, grep_rank, load_find_set, score
from llmasos.knowledge.filesystem import FileSystem
from tests.knowledge.conftest import database, engine, fs, settings

__all__ = ["database", "engine", "fs", "settings"]


def test_random_rollbacks_restore_bytes_and_index(fs: FileSystem) -> None:
    result = asyncio.run(bench_rollback(fs, sequences=4, steps=10, seed=3))
    assert result.rollbacks > 0 and result.failures == []
    assert result.byte_identical == result.index_restored == result.index_forgot == result.rollbacks


def test_grep_baseline_ranks_by_matched_words_and_the_set_is_consistent() -> None:
    files = {"/a": "apple pie recipe", "/b": "apple", "/c": "pear"}
    assert grep_rank(files, "the apple pie") == ["/a", "/b"]
    assert score([(["/a", "/b"], "/b"), (["/c"], "/c")], "x").mrr == 0.75
    data = load_find_set()
    assert all(q["gold"] in data["files"] for q in data["queries"])
