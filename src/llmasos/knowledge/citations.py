"""Grounding answers on vector stores, and the citations that point back to chunks.

`ground` searches the stores, keeps the hits that pass the relevance floor and numbers them
as `Citation` s; `sources_prompt` is the text the model reads (each source under its number,
with its file and heading path); `annotate` finds the ``[n]`` markers in the answer and
turns each into an OpenAI ``file_citation`` annotation (file id, filename, the quoted chunk
and its id). When the model cited nothing, a ``Sources: [1] …`` line is appended so every
answer carries its citations — several when several chunks were used. When no hit passes
the floor the answer is `NOTHING_FOUND` and the model is not asked at all: it cannot invent
what the store does not say.

Relevance floor: a hit counts when its cosine similarity to the question is at least
`RELEVANCE_FLOOR` (see docs/design/knowledge.md for how it was measured with
all-MiniLM-L6-v2).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from llmasos.knowledge.filters import Filter
from llmasos.knowledge.stores import KnowledgeBase, SearchPage, SearchResult

RELEVANCE_FLOOR: Final = 0.35
"""Cosine similarity (all-MiniLM-L6-v2) under which a chunk is not evidence for a question."""
DEFAULT_SOURCES: Final = 4
NOTHING_FOUND: Final = (
    "I found nothing about this in the knowledge base, so I cannot answer it from your documents."
)
_MARKER = re.compile(r"\[(\d{1,2})\]")


@dataclass(frozen=True)
class Citation:
    number: int
    chunk_id: str
    file_id: str
    filename: str
    vector_store_id: str
    quote: str
    score: float
    page: int | None
    headings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "chunk_id": self.chunk_id,
            "file_id": self.file_id,
            "filename": self.filename,
            "vector_store_id": self.vector_store_id,
            "quote": self.quote,
            "score": round(self.score, 6),
            "page": self.page,
            "headings": list(self.headings),
        }


@dataclass(frozen=True)
class Grounding:
    query: str
    page: SearchPage
    citations: list[Citation]

    @property
    def found(self) -> bool:
        return bool(self.citations)

    def search_results(self) -> list[dict[str, Any]]:
        """The ``results`` of a ``file_search_call`` item (OpenAI's shape plus chunk ids)."""
        return [
            {
                "file_id": r.chunk.file_id,
                "filename": r.chunk.filename,
                "score": round(r.score, 6),
                "text": r.chunk.text,
                "attributes": r.attributes,
                "chunk_id": r.chunk.id,
                "vector_store_id": r.chunk.vector_store_id,
            }
            for r in self.page.results
        ]


def is_relevant(result: SearchResult, floor: float = RELEVANCE_FLOOR) -> bool:
    return result.score >= floor


def citations_of(results: Sequence[SearchResult], limit: int = DEFAULT_SOURCES) -> list[Citation]:
    return [
        Citation(
            number=number,
            chunk_id=r.chunk.id,
            file_id=r.chunk.file_id,
            filename=r.chunk.filename,
            vector_store_id=r.chunk.vector_store_id,
            quote=r.chunk.text,
            score=r.score,
            page=r.chunk.page,
            headings=tuple(r.chunk.headings),
        )
        for number, r in enumerate([r for r in results if is_relevant(r)][:limit], start=1)
    ]


async def ground(
    knowledge: KnowledgeBase,
    user_id: int | None,
    store_ids: Sequence[str],
    query: str,
    *,
    max_sources: int = DEFAULT_SOURCES,
    max_num_results: int = 10,
    filters: Filter | None = None,
) -> Grounding:
    """Search ``store_ids`` for ``query`` and number the relevant hits."""
    page = await knowledge.search(
        user_id, store_ids, query, max_num_results=max_num_results, filters=filters
    )
    return Grounding(query, page, citations_of(page.results, max_sources))


def sources_prompt(citations: Sequence[Citation]) -> str:
    """The sources as the model reads them, with how to cite them."""
    blocks = []
    for c in citations:
        where = c.filename + (f", page {c.page}" if c.page else "")
        if c.headings:
            where += " — " + " > ".join(c.headings)
        blocks.append(f"[{c.number}] ({where})\n{c.quote}")
    return (
        "Answer only from the numbered sources below. After each fact, cite its source "
        "number in brackets, like [1]. If the sources do not answer the question, say so.\n\n"
        + "\n\n".join(blocks)
    )


def annotate(text: str, citations: Sequence[Citation]) -> tuple[str, list[dict[str, Any]]]:
    """The answer (with a sources line appended when the model cited nothing) and one
    ``file_citation`` annotation per ``[n]`` marker, in text order."""
    by_number = {c.number: c for c in citations}
    if citations and not any(int(m.group(1)) in by_number for m in _MARKER.finditer(text)):
        listed = ", ".join(f"[{c.number}] {c.filename}" for c in citations)
        text = f"{text.rstrip()}\n\nSources: {listed}"
    annotations = []
    for match in _MARKER.finditer(text):
        citation = by_number.get(int(match.group(1)))
        if citation is not None:
            annotations.append(
                {
                    "type": "file_citation",
                    "index": match.start(),
                    "file_id": citation.file_id,
                    "filename": citation.filename,
                    "quote": citation.quote,
                    "chunk_id": citation.chunk_id,
                    "vector_store_id": citation.vector_store_id,
                    "number": citation.number,
                }
            )
    return text, annotations
