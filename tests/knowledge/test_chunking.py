"""Chunking: contiguous spans, sizes within the limit, overlap, and sections kept apart."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmasos.errors import InvalidRequestError
from llmasos.knowledge.chunking import chunk_document
from llmasos.knowledge.convert import UnsupportedFileError, convert


def words(n: int, stem: str = "word") -> str:
    return " ".join(f"{stem}{i}" for i in range(n)) + "."


def test_every_chunk_is_a_span_of_the_document_within_the_limit():
    source = "\n\n".join(words(30, f"p{k}x") for k in range(20))
    document = convert(source.encode(), "long.txt")
    chunks = chunk_document(document, max_tokens=100, overlap_tokens=20)
    assert len(chunks) > 1
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert chunk.text == document.text[chunk.start : chunk.end]
        assert chunk.tokens <= 100
    assert chunks[0].start == 0 and chunks[-1].end == len(document.text)


def test_consecutive_chunks_overlap_and_cover_everything():
    source = "\n\n".join(words(15, f"p{k}x") for k in range(12))
    document = convert(source.encode(), "long.txt")
    chunks = chunk_document(document, max_tokens=64, overlap_tokens=20)
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end, "chunks in one section share their edge"
        assert after.start > before.start
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, c in enumerate(document.text) if not c.isspace())


def test_a_heading_starts_a_new_chunk_and_is_not_overlapped_across():
    source = f"# One\n\n{words(40, 'a')}\n\n# Two\n\n{words(10, 'b')}\n"
    document = convert(source.encode(), "doc.md")
    chunks = chunk_document(document, max_tokens=120, overlap_tokens=30)
    assert [c.headings for c in chunks] == [("One",), ("Two",)]
    assert chunks[1].text.startswith("Two")
    assert "a1" not in chunks[1].text


def test_a_small_heading_stays_with_its_text():
    source = f"# One\n\nshort.\n\n## Sub\n\n{words(10, 'b')}\n"
    chunks = chunk_document(convert(source.encode(), "doc.md"), max_tokens=120)
    assert len(chunks) == 1


def test_an_over_long_paragraph_is_cut_at_sentences_then_words():
    sentences = " ".join(f"Sentence {i} has some words in it." for i in range(40))
    one_long_sentence = " ".join(f"w{i}" for i in range(300))
    document = convert(f"{sentences}\n\n{one_long_sentence}".encode(), "a.txt")
    chunks = chunk_document(document, max_tokens=50, overlap_tokens=0)
    assert all(c.tokens <= 50 for c in chunks)
    sentence_chunks = [c for c in chunks if "Sentence" in c.text]
    assert all(c.text.endswith(".") for c in sentence_chunks)
    assert all(not c.text.startswith(("as ", "some ")) for c in sentence_chunks)
    joined = " ".join(c.text for c in chunks if c.text.startswith("w"))
    assert joined.split() == one_long_sentence.split()


def test_custom_token_counter_is_used():
    document = convert(("abc " * 100).encode(), "a.txt")
    chunks = chunk_document(document, max_tokens=60, overlap_tokens=0, count_tokens=len)
    assert all(len(c.text) <= 60 for c in chunks)


def test_pages_and_headings_travel_with_chunks():
    from tests.knowledge.documents import pdf_bytes

    document = convert(pdf_bytes([[words(10, "first")], [words(10, "second")]]), "x.pdf")
    chunks = chunk_document(document, max_tokens=16, overlap_tokens=0)
    assert [c.page for c in chunks] == [1, 2]


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (100, 60), (100, -1)])
def test_bad_sizes_are_refused_naming_the_field(size, overlap):
    document = convert(b"text", "a.txt")
    with pytest.raises(InvalidRequestError) as caught:
        chunk_document(document, max_tokens=size, overlap_tokens=overlap)
    assert caught.value.param in {"max_chunk_size_tokens", "chunk_overlap_tokens"}


@settings(max_examples=60, deadline=None)
@given(
    paragraphs=st.lists(
        st.text(alphabet=st.sampled_from("ab c.\n#"), min_size=1, max_size=200), min_size=1
    ),
    size=st.integers(min_value=16, max_value=80),
    overlap_share=st.integers(min_value=0, max_value=2),
)
def test_chunks_always_terminate_tile_and_respect_the_limit(paragraphs, size, overlap_share):
    try:
        document = convert("\n\n".join(paragraphs).encode(), "gen.md")
    except UnsupportedFileError:  # nothing but blanks and empty headings
        return
    chunks = chunk_document(document, max_tokens=size, overlap_tokens=size * overlap_share // 4)
    for chunk in chunks:
        assert chunk.text == document.text[chunk.start : chunk.end]
        assert chunk.tokens <= size or len(chunk.text.split()) == 1
    assert chunks
    assert chunks[0].start == 0 and chunks[-1].end == len(document.text)
