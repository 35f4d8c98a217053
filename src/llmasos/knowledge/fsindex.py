"""What the semantic file system indexes for one version of a file.

`derive` turns a file's path and bytes into `Piece` s: always one *name* piece (the path's
words, the document title, the type), then the *content* chunks of its text when
`llmasos.knowledge.convert` can read it (txt, md, html, pdf, docx; chunked by
`llmasos.knowledge.chunking`), then its *summary* when one was made. Files it cannot read
are stored all the same and found by name and metadata only; `Derived.note` says why.
Embeddings come from the kernel's embed syscall, in batches. Nothing here touches the
database: the caller writes the pieces in the transaction of the version they describe.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from llmasos.kernel.interface import EngineClientInterface

MAX_INDEXED_BYTES: Final = 32 * 2**20
"""Larger files are indexed by name only (their bytes are stored whole)."""
CHUNK_TOKENS: Final = 160
"""Words per chunk: all-MiniLM-L6-v2 reads 256 word pieces, about 180 English words."""
CHUNK_OVERLAP: Final = 32
EMBED_BATCH: Final = 32
BINARY_TYPE: Final = "binary"
OCTET_STREAM: Final = "application/octet-stream"


@dataclass(frozen=True)
class Piece:
    """One searchable text of a file."""

    kind: str
    """``name``, ``content`` or ``summary``."""
    text: str
    page: int | None = None


@dataclass(frozen=True)
class Derived:
    media_type: str
    type: str
    """The short type (txt, md, html, pdf, docx) or ``binary``."""
    pieces: list[Piece]
    text: str | None
    """The whole extracted text (None for a file read by name only)."""
    note: str | None = None
    """Why the content is not indexed, when it is not."""


def name_text(path: str, title: str | None, short_type: str) -> str:
    """The words a file is found by its name: path components, title and type."""
    words = path.strip("/").replace("/", " ")
    return " ".join(part for part in (words, title or "", short_type) if part)


def guess_media_type(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename)
    return guessed or OCTET_STREAM


def derive(path: str, data: bytes | None, size: int, summary: str | None) -> Derived:
    """The pieces of one version; ``data`` is None when the file is too large to read."""
    from llmasos.knowledge.chunking import chunk_document
    from llmasos.knowledge.convert import (
        IMAGE_MEDIA_TYPES,
        SUPPORTED_MEDIA_TYPES,
        CorruptFileError,
        UnsupportedFileError,
        convert,
        detect_media_type,
    )

    filename = path.rsplit("/", 1)[-1]
    note: str | None = None
    document = None
    if data is None:
        note = f"not indexed: {size} bytes is more than the {MAX_INDEXED_BYTES} read for search"
    else:
        try:
            if detect_media_type(data, filename) in IMAGE_MEDIA_TYPES:
                # OCR takes a second or more a page: knowledge bases read images, this index
                # (written in the version's transaction) does not wait for it
                note = (
                    "content not indexed: an image (add it to a knowledge base to search its text)"
                )
            else:
                document = convert(data, filename)
        except (UnsupportedFileError, CorruptFileError) as error:
            note = f"content not indexed: {error.message}"
    if document is None:
        media_type = guess_media_type(filename)
        if media_type in SUPPORTED_MEDIA_TYPES:  # a readable type whose bytes were not
            media_type = OCTET_STREAM
        pieces = [Piece("name", name_text(path, None, BINARY_TYPE))]
        if summary:
            pieces.append(Piece("summary", summary))
        return Derived(media_type, BINARY_TYPE, pieces, None, note)
    short = SUPPORTED_MEDIA_TYPES.get(document.media_type, BINARY_TYPE)
    pieces = [Piece("name", name_text(path, document.title, short))]
    for chunk in chunk_document(document, max_tokens=CHUNK_TOKENS, overlap_tokens=CHUNK_OVERLAP):
        if chunk.text.strip():
            pieces.append(Piece("content", chunk.text, chunk.page))
    if summary:
        pieces.append(Piece("summary", summary))
    return Derived(document.media_type, short, pieces, document.text)


def read_for_index(blob: Path, size: int) -> bytes | None:
    """The bytes to derive pieces from, or None when the file is too large."""
    return blob.read_bytes() if size <= MAX_INDEXED_BYTES else None


async def embed_pieces(
    engine: EngineClientInterface, model: str | None, pieces: Sequence[Piece]
) -> list[list[float]]:
    """One embedding per piece, through the kernel, in batches of `EMBED_BATCH`."""
    vectors: list[list[float]] = []
    texts = [piece.text for piece in pieces]
    for start in range(0, len(texts), EMBED_BATCH):
        result = await engine.embed(model, texts[start : start + EMBED_BATCH])
        vectors.extend(result.vectors)
    return vectors
