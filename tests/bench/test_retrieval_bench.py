"""The retrieval benchmark's scoring and its question set (the run itself needs the
python3.11-doc pages and minutes of embedding; it is a benchmark, not a test)."""

from __future__ import annotations

from pathlib import Path

from llmasos.bench.retrieval import (
    graph_of,
    keyword_ranking,
    load_questions,
    page_ranking,
    score,
    subset,
)
from llmasos.knowledge.graphextract import Triple


def test_question_set_is_well_formed() -> None:
    data = load_questions()
    questions = data["questions"]
    assert len(questions) >= 60
    assert len({q["id"] for q in questions}) == len(questions)
    assert all(q["question"].strip() and q["gold"] for q in questions)
    assert all(g.endswith(".html") for q in questions for g in q["gold"])
    assert "PSF" in data["source"]["documents"]


def test_pages_rank_by_their_best_chunk_and_score() -> None:
    ranking = page_ranking(["a", "b", "a", "c", "d", "e", "f"])
    assert ranking == ["a", "b", "c", "d", "e", "f"]
    assert score(ranking, {"c"}) == (1.0, 1 / 3)
    assert score(ranking, {"f"}) == (0.0, 1 / 6)
    assert score(ranking, {"zzz"}) == (0.0, 0.0)


def test_keyword_baseline_counts_distinct_query_words() -> None:
    pages = {"hashlib.html": {"secure", "hash", "digest"}, "json.html": {"json", "encode"}}
    assert keyword_ranking("a secure hash digest", pages)[0] == "hashlib.html"
    assert keyword_ranking("nothing matches", pages) == []


def test_the_small_subset_keeps_gold_pages_and_as_many_others() -> None:
    questions = [{"question": "q", "gold": ["b.html"]}, {"question": "r", "gold": ["d.html"]}]
    pages = [Path(f"{name}.html") for name in "abcdef"]
    chosen, kept = subset(questions, pages, 1)
    assert chosen == questions[:1] and [p.name for p in kept] == ["b.html", "a.html"]
    assert subset(questions, pages, None) == (questions, pages)


def test_the_benchmark_graph_merges_names_as_a_build_does() -> None:
    triples = {
        7: [Triple("Hashlib", "other", "provides", "SHA-256", "concept")],
        9: [Triple("hashlib ", "other", "documents", "hmac", "concept")],
    }
    graph = graph_of(triples, {"hashlib": [1.0, 0.0], "sha-256": [0.0, 1.0], "hmac": [0.6, 0.8]})
    assert len(graph.connected()) == 3 and len(graph.edges) == 2
    assert graph.by_chunk[7] & graph.by_chunk[9]  # both chunks name the one hashlib entity
