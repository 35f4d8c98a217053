"""Pure logic: OpenAI's attribute filters, chunking strategies and citation annotation."""

from __future__ import annotations

import pytest

from llmasos.errors import InvalidRequestError
from llmasos.knowledge.citations import Citation, annotate
from llmasos.knowledge.filters import check_attributes, matches, parse_filter
from llmasos.knowledge.stores import Chunking, parse_chunking

ATTRS = {"year": 2024, "team": "design", "draft": False, "score": 2.5}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"type": "eq", "key": "year", "value": 2024}, True),
        ({"type": "eq", "key": "year", "value": "2024"}, False),  # no coercion
        ({"type": "ne", "key": "team", "value": "ops"}, True),
        ({"type": "gt", "key": "score", "value": 2}, True),
        ({"type": "lte", "key": "year", "value": 2023}, False),
        ({"type": "gte", "key": "team", "value": "a"}, True),  # strings order as strings
        ({"type": "gt", "key": "team", "value": 1}, False),  # mixed types never match
        ({"type": "eq", "key": "draft", "value": False}, True),
        ({"type": "eq", "key": "draft", "value": 0}, False),  # a boolean is not a number
        ({"type": "in", "key": "team", "value": ["ops", "design"]}, True),
        ({"type": "nin", "key": "team", "value": ["design"]}, False),
        ({"type": "eq", "key": "missing", "value": 1}, False),
        ({"type": "ne", "key": "missing", "value": 1}, True),
        ({"type": "and", "filters": [{"type": "eq", "key": "year", "value": 2024},
                                     {"type": "eq", "key": "team", "value": "ops"}]}, False),
        ({"type": "or", "filters": [{"type": "eq", "key": "year", "value": 2024},
                                    {"type": "eq", "key": "team", "value": "ops"}]}, True),
    ],
)  # fmt: skip
def test_filters(flt: dict[str, object], expected: bool) -> None:
    assert matches(parse_filter(flt), ATTRS) is expected


@pytest.mark.parametrize(
    ("flt", "param"),
    [
        ([], "filters"),
        ({"type": "regex", "key": "a", "value": "x"}, "filters.type"),
        ({"type": "eq", "key": "", "value": 1}, "filters.key"),
        ({"type": "eq", "key": "a", "value": None}, "filters.value"),
        ({"type": "in", "key": "a", "value": "x"}, "filters.value"),
        ({"type": "or", "filters": []}, "filters.filters"),
        ({"type": "and", "filters": [{"type": "eq", "key": "a", "value": float("nan")}]},
         "filters.filters[0].value"),
    ],
)  # fmt: skip
def test_bad_filters_name_their_path(flt: object, param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_filter(flt)
    assert caught.value.param == param


def test_filters_nest_only_so_deep() -> None:
    flt: dict[str, object] = {"type": "eq", "key": "a", "value": 1}
    for _ in range(9):
        flt = {"type": "and", "filters": [flt]}
    with pytest.raises(InvalidRequestError, match="nested more than"):
        parse_filter(flt)


def test_attributes_are_checked() -> None:
    assert check_attributes({"a": 1, "b": "x", "c": True}) == {"a": 1, "b": "x", "c": True}
    for bad, param in (({"a": [1]}, "attributes.a"), ({"a": "x" * 513}, "attributes.a"),
                       ({f"k{i}": 1 for i in range(17)}, "attributes")):  # fmt: skip
        with pytest.raises(InvalidRequestError) as caught:
            check_attributes(bad)
        assert caught.value.param == param


def test_chunking_strategies() -> None:
    assert parse_chunking(None) == Chunking(250, 50)
    assert parse_chunking({"type": "auto"}) == Chunking(250, 50)
    static = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50},
    }
    assert parse_chunking(static) == Chunking(100, 50)
    with pytest.raises(InvalidRequestError):
        parse_chunking({"type": "static", "static": {"max_chunk_size_tokens": True,
                                                     "chunk_overlap_tokens": 0}})  # fmt: skip


def citation(number: int, filename: str) -> Citation:
    return Citation(number, f"chunk_{number}", f"file-{number}", filename, "vs_x",
                    f"quote {number}", 0.5, None, ())  # fmt: skip


def test_annotate_marks_each_citation_where_it_is_cited() -> None:
    cites = [citation(1, "a.md"), citation(2, "b.pdf")]
    text, annotations = annotate("Paris [1] and Rome [2], again [1]; not [7].", cites)
    assert text == "Paris [1] and Rome [2], again [1]; not [7]."
    assert [(a["number"], text[a["index"] : a["index"] + 3]) for a in annotations] == [
        (1, "[1]"), (2, "[2]"), (1, "[1]"),
    ]  # fmt: skip
    assert annotations[1]["file_id"] == "file-2" and annotations[1]["quote"] == "quote 2"


def test_annotate_lists_the_sources_when_the_model_cited_none() -> None:
    text, annotations = annotate("It is Paris.", [citation(1, "a.md"), citation(2, "b.pdf")])
    assert text == "It is Paris.\n\nSources: [1] a.md, [2] b.pdf"
    assert [a["filename"] for a in annotations] == ["a.md", "b.pdf"]
    assert annotate("Nothing.", []) == ("Nothing.", [])
