"""The knowledge graph's logic on in-memory graphs: names, resolution, hops, paths, graph
mode's ranking and fusion, and the parsing of extracted triples."""

from __future__ import annotations

from llmasos.knowledge.graph import (
    Edge,
    Entity,
    Graph,
    fuse_rankings,
    graph_ranking,
    normalize_name,
    resolve_names,
)
from llmasos.knowledge.graphextract import Triple, parse_triples, salvage_json, triple_schema
from llmasos.knowledge.graphstore import best_quote


def chain() -> Graph:
    """maria -manages-> acme -owns-> lisbon office -hosts-> offsite; bob -knows-> maria;
    zed alone with yan. Chunk i says edge i."""
    names = ["Maria", "Acme", "Lisbon Office", "Offsite", "Bob", "Zed", "Yan"]
    entities = [Entity(i, n, "other") for i, n in enumerate(names)]
    edges = [
        Edge(1, 0, "manages", 1, 101),
        Edge(2, 1, "owns", 2, 102),
        Edge(3, 2, "hosts", 3, 103),
        Edge(4, 4, "knows", 0, 104),
        Edge(5, 5, "met", 6, 105),
    ]
    return Graph.of(entities, edges)


def test_names_normalize_by_case_space_and_punctuation() -> None:
    assert normalize_name('  "Acme   Corp." ') == "acme corp"
    assert normalize_name("ＡＣＭＥ\tCorp") == "acme corp"  # NFKC folds full-width letters
    assert normalize_name("...") == ""
    assert (
        normalize_name("The  Lisbon offsite")
        == "lisbon offsite"
        == normalize_name("lisbon offsite")
    )
    assert normalize_name("the") == "the"


def test_resolution_merges_exact_keys_and_near_duplicates_only() -> None:
    known = {"acme corporation": [1.0, 0.0, 0.0]}
    new = {
        "acme corporation": [1.0, 0.0, 0.0],
        "acme corp": [0.95, 0.1, 0.0],  # cosine 0.99: the same entity
        "acme labs": [0.6, 0.8, 0.0],  # cosine 0.6: another one
        "acme labs inc": [0.6, 0.79, 0.05],  # merges into the new "acme labs"
        "no vector": None,
    }
    merged = resolve_names(known, new)
    assert merged == {
        "acme corporation": "acme corporation",
        "acme corp": "acme corporation",
        "acme labs": "acme labs",
        "acme labs inc": "acme labs",
        "no vector": "no vector",
    }


def test_neighbourhood_goes_k_hops_nearest_first() -> None:
    graph = chain()
    one = graph.neighbourhood([0], hops=1)
    assert {(hop, e.id) for hop, e in one} == {(1, 1), (1, 4)}
    two = graph.neighbourhood([0], hops=2)
    assert [hop for hop, _ in two] == sorted(hop for hop, _ in two)
    assert {e.id for _, e in two} == {1, 4, 2}
    assert len(graph.neighbourhood([0], hops=4, limit=2)) == 2
    assert graph.neighbourhood([99], hops=2) == []


def test_shortest_path_either_direction_and_bounded() -> None:
    graph = chain()
    path = graph.shortest_path(4, 3, max_hops=4)  # bob -> maria -> acme -> office -> offsite
    assert path is not None and [e.id for e in path] == [4, 1, 2, 3]
    assert graph.shortest_path(3, 4, max_hops=4) is not None  # edges walk both ways
    assert graph.shortest_path(4, 3, max_hops=3) is None  # too far
    assert graph.shortest_path(0, 5) is None  # another component
    assert graph.shortest_path(0, 0) == []


def test_graph_mode_reaches_chunks_of_neighbouring_triples_and_fuses() -> None:
    graph = chain()
    # the hybrid found chunk 102 (acme owns lisbon office) first: the graph adds the chunks of
    # edges touching acme and lisbon office (101, 103), not the unconnected 105
    reached = graph_ranking(graph, [102, 999])
    assert reached[0] == 102 and set(reached) == {101, 102, 103}
    fused = fuse_rankings([102, 999, 105], reached)
    assert fused[0] == 102  # first in both
    assert fused.index(101) < fused.index(105)  # graph evidence outranks a lone hybrid tail
    assert set(fused) == {101, 102, 103, 105, 999}
    assert fuse_rankings([1, 2], []) == [1, 2]


def test_parse_triples_keeps_well_formed_ones() -> None:
    data = {
        "triples": [
            {"subject": " Maria ", "subject_type": "person", "predicate": "manages",
             "object": "Acme", "object_type": "organization"},
            {"subject": "maria", "subject_type": "person", "predicate": "Manages",
             "object": "ACME", "object_type": "organization"},  # a duplicate
            {"subject": "Acme", "subject_type": "robot", "predicate": "is",
             "object": "acme", "object_type": "other"},  # itself
            {"subject": "Acme", "subject_type": "robot", "predicate": "owns",
             "object": "Lisbon", "object_type": "place"},
            {"subject": "", "predicate": "x", "object": "y"},
            "junk",
        ]
    }  # fmt: skip
    assert parse_triples(data) == [
        Triple("Maria", "person", "manages", "Acme", "organization"),
        Triple("Acme", "other", "owns", "Lisbon", "place"),
    ]
    assert parse_triples({"no": "triples"}) == [] and parse_triples([1]) == []
    schema = triple_schema()
    assert schema["properties"]["triples"]["items"]["required"] == [
        "subject", "subject_type", "predicate", "object", "object_type"
    ]  # fmt: skip


def test_best_quote_is_the_sentence_naming_the_entities() -> None:
    text = "The plan is ready. Maria manages Acme since 2020. Budgets are tight."
    assert best_quote(text, "Maria", "Acme") == "Maria manages Acme since 2020."
    assert best_quote(text, "Nobody") == "The plan is ready."


def test_an_answer_cut_off_keeps_its_complete_triples() -> None:
    whole = '{"triples": [{"subject": "A", "predicate": "p", "object": "B"}]}'
    assert salvage_json(whole) == {"triples": [{"subject": "A", "predicate": "p", "object": "B"}]}
    cut = (
        '{"triples":[{"subject":"A","subject_type":"other","predicate":"p","object":"B",'
        '"object_type":"other"},{"subject":"C","subject_type":"other","predicate":"q","obj'
    )
    assert [t.subject for t in parse_triples(salvage_json(cut))] == ["A"]
    assert salvage_json('{"triples":[{"subject":"A"') is None
    assert salvage_json("") is None
