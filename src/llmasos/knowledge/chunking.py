"""Cut a `Document` into overlapping chunks that follow its structure.

A chunk is always one contiguous span of ``Document.text`` (``chunk.text ==
doc.text[chunk.start:chunk.end]``), so a citation can quote it and point at its place. The
document's blocks are the pieces; a block longer than ``max_tokens`` is cut at sentence ends,
and a sentence longer than that at word boundaries — never inside a word. Pieces are packed
greedily up to ``max_tokens``; a heading starts a new chunk unless the current one is still
under a quarter full (so a heading stays with its first paragraph); each chunk after the first
in a run starts with whole trailing pieces of the previous one, up to ``overlap_tokens``.
Token counts come from ``count_tokens`` — the embedding model's tokenizer in production,
because all-MiniLM-L6-v2 reads only its first 256 tokens and anything past that would be
silently ignored — or a word-and-punctuation count by default.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from llmasos.errors import InvalidRequestError
from llmasos.knowledge.convert import Document

TokenCounter = Callable[[str], int]

DEFAULT_MAX_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = 64
MIN_MAX_TOKENS = 16

SENTENCE_END = re.compile(r"(?<=[.!?。！？;；])[\"')\]]*\s+|\n+")
WORD = re.compile(r"\S+")
APPROXIMATE_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approximate_tokens(text: str) -> int:
    """Words and punctuation marks: a tokenizer-free stand-in for a token count."""
    return len(APPROXIMATE_TOKEN.findall(text))


@dataclass(frozen=True)
class Chunk:
    """One chunk: a span of the document with where it sits in the document's structure."""

    index: int
    start: int
    end: int
    text: str
    headings: tuple[str, ...]
    page: int | None
    tokens: int


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int
    block: int
    heading: bool


def check_chunking(max_tokens: int, overlap_tokens: int) -> None:
    """Refuse sizes that cannot make chunks (400, naming the field)."""
    if max_tokens < MIN_MAX_TOKENS:
        raise InvalidRequestError(
            f"max_chunk_size_tokens must be at least {MIN_MAX_TOKENS}, got {max_tokens}",
            param="max_chunk_size_tokens",
        )
    if overlap_tokens < 0 or overlap_tokens > max_tokens // 2:
        raise InvalidRequestError(
            "chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens "
            f"({max_tokens // 2}), got {overlap_tokens}",
            param="chunk_overlap_tokens",
        )


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> Iterator[tuple[int, int]]:
    """Cut ``text[start:end]`` after each match of ``pattern``, trimming whitespace."""
    position = start
    for match in pattern.finditer(text, start, end):
        if match.end() >= end:
            break
        yield from _trimmed(text, position, match.end())
        position = match.end()
    yield from _trimmed(text, position, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end


def _pieces(doc: Document, max_tokens: int, count: TokenCounter) -> list[_Piece]:
    pieces: list[_Piece] = []
    for number, block in enumerate(doc.blocks):
        tokens = count(doc.text[block.start : block.end])
        if tokens <= max_tokens:
            pieces.append(_Piece(block.start, block.end, tokens, number, block.heading))
            continue
        for start, end in _spans(doc.text, SENTENCE_END, block.start, block.end):
            sentence_tokens = count(doc.text[start:end])
            if sentence_tokens <= max_tokens:
                pieces.append(_Piece(start, end, sentence_tokens, number, False))
            else:
                pieces.extend(_split_words(doc.text, start, end, number, max_tokens, count))
    return pieces


def _split_words(
    text: str, start: int, end: int, block: int, max_tokens: int, count: TokenCounter
) -> Iterator[_Piece]:
    """Pack words into pieces of at most ``max_tokens`` (a lone over-long word stands alone)."""
    piece_start: int | None = None
    piece_end = start
    for match in WORD.finditer(text, start, end):
        if piece_start is None:
            piece_start, piece_end = match.start(), match.end()
            continue
        if count(text[piece_start : match.end()]) > max_tokens:
            yield _Piece(piece_start, piece_end, count(text[piece_start:piece_end]), block, False)
            piece_start = match.start()
        piece_end = match.end()
    if piece_start is not None:
        yield _Piece(piece_start, piece_end, count(text[piece_start:piece_end]), block, False)


def chunk_document(
    doc: Document,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    overlap_tokens: int | None = None,
    count_tokens: TokenCounter | None = None,
) -> list[Chunk]:
    """The document's chunks, in order; see the module docstring for the rules.

    ``overlap_tokens`` defaults to `DEFAULT_OVERLAP_TOKENS`, at most half of ``max_tokens``.
    """
    if overlap_tokens is None:
        overlap_tokens = min(DEFAULT_OVERLAP_TOKENS, max_tokens // 2)
    check_chunking(max_tokens, overlap_tokens)
    count = count_tokens or approximate_tokens
    pieces = _pieces(doc, max_tokens, count)
    chunks: list[Chunk] = []
    first = 0
    while first < len(pieces):
        last = first
        total = pieces[first].tokens
        while last + 1 < len(pieces):
            following = pieces[last + 1]
            if total + following.tokens > max_tokens:
                break
            if following.heading and total >= max_tokens // 4:
                break
            last += 1
            total += following.tokens
        chunks.append(_chunk(doc, pieces, first, last, len(chunks), count))
        if last + 1 >= len(pieces):
            break
        first = _overlap_start(pieces, first, last, overlap_tokens)
    return chunks


def _overlap_start(pieces: list[_Piece], first: int, last: int, overlap_tokens: int) -> int:
    """Where the next chunk starts: after ``last``, stepped back over whole trailing pieces.

    The overlap never crosses a heading (a new section starts fresh) and always advances
    past ``first`` so chunking terminates.
    """
    following = last + 1
    if pieces[following].heading:
        return following
    start = following
    carried = 0
    while start - 1 > first:
        previous = pieces[start - 1]
        if previous.heading or carried + previous.tokens > overlap_tokens:
            break
        carried += previous.tokens
        start -= 1
    return start


def _chunk(
    doc: Document, pieces: list[_Piece], first: int, last: int, index: int, count: TokenCounter
) -> Chunk:
    start, end = pieces[first].start, pieces[last].end
    text = doc.text[start:end]
    block = doc.blocks[pieces[first].block]
    return Chunk(index, start, end, text, block.headings, block.page, count(text))
