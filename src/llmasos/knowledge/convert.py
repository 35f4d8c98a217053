"""Turn the bytes of an uploaded document into text that keeps its structure.

`convert` reads plain text, Markdown (markdown-it-py), HTML (beautifulsoup4), PDF (pypdf) and
Word ``.docx`` (python-docx) into a `Document`: one string of text plus the `Block` spans that
make it up (headings, paragraphs, list items, code, table rows), each with the heading path in
force and, for PDFs, its page. Chunking (`llmasos.knowledge.chunking`) and citations work on
those spans, so a quote is always a slice of ``Document.text``. The type is detected from the
bytes first and the file name second; anything else, a corrupt file or a file without text
raises a one-line `UnsupportedFileError` / `CorruptFileError` (HTTP 400) naming the problem.

A scanned PDF has pages of images and no text layer. Given an ``ocr`` reader, `convert` reads
the images of each page without text through it, and an image file (PNG, JPEG, TIFF, WebP,
GIF: a photographed or scanned page) as one page of text (`registered_ocr` is the OCR engine
of the plugin registry — tesseract, built in — so this layer needs no import of
``perception``, which sits above it). Without a reader an image is refused, saying why.
Nothing else here touches the disk, the database or a model.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from llmasos.errors import InvalidRequestError, LLMasOSError

logger = logging.getLogger(__name__)
OcrReader = Callable[[bytes], str]
"""Reads the printed text of one image file's bytes (PNG, JPEG ...)."""
MAX_OCR_PAGES = 300
"""Scanned pages read per PDF; past it the rest are left out, and logged."""

MARKDOWN = "text/markdown"
HTML = "text/html"
TEXT = "text/plain"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

SUPPORTED_MEDIA_TYPES: Mapping[str, str] = {
    TEXT: "txt",
    MARKDOWN: "md",
    HTML: "html",
    PDF: "pdf",
    DOCX: "docx",
}
"""Media type -> the short name users see."""
IMAGE_MEDIA_TYPES: Mapping[str, str] = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/tiff": "tiff",
    "image/webp": "webp",
    "image/gif": "gif",
}
"""Images whose printed text is read by OCR, when `convert` is given a reader."""
IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"GIF8", "image/gif"),
)

DEFAULT_MAX_UNPACKED = 256 << 20
"""A .docx (a zip archive) may unpack to at most this many bytes: zip bombs stop here."""

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}

# Leading bytes of formats people upload by mistake, to name them in the error.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"RIFF", "a RIFF file (WAV audio)"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg audio"),
    (b"fLaC", "FLAC audio"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office document (.doc/.xls; save it as .docx)"),
    (b"SQLite format 3\x00", "an SQLite database"),
)

BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main",
    "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr",
    "ul", "br", "caption",
}  # fmt: skip
SKIPPED_TAGS = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
HEADING_TAGS = {f"h{level}": level for level in range(1, 7)}
WORD_HEADING = re.compile(r"^(?:Heading|heading)\s*(\d)$")


class UnsupportedFileError(InvalidRequestError):
    """The file is not a kind we read, or holds no text; the message names what it is."""


class CorruptFileError(InvalidRequestError):
    """The file claims a supported type but cannot be read; the message says why."""


@dataclass(frozen=True)
class Block:
    """One structural unit of a document: ``Document.text[start:end]``."""

    start: int
    end: int
    headings: tuple[str, ...]
    """The heading path in force, outermost first (a heading block includes itself)."""
    page: int | None = None
    """1-based page number for PDFs."""
    heading: bool = False


@dataclass(frozen=True)
class Document:
    """A converted document: its text and the blocks that tile it."""

    text: str
    blocks: tuple[Block, ...]
    media_type: str
    title: str | None = None
    pages: int | None = None

    def block_text(self, block: Block) -> str:
        return self.text[block.start : block.end]


class _Builder:
    """Appends blocks to one text, separated by blank lines, tracking the heading path."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.blocks: list[Block] = []
        self.path: list[tuple[int, str]] = []

    def heading(self, level: int, text: str, page: int | None = None) -> None:
        text = " ".join(text.split())
        if not text:
            return
        while self.path and self.path[-1][0] >= level:
            self.path.pop()
        self.path.append((level, text))
        self.add(text, page=page, heading=True, normalize=False)

    def add(
        self, text: str, *, page: int | None = None, heading: bool = False, normalize: bool = True
    ) -> None:
        text = " ".join(text.split()) if normalize else text.strip("\n").rstrip()
        if not text.strip():
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        headings = tuple(name for _, name in self.path)
        self.blocks.append(Block(start, self.length, headings, page, heading))

    def build(self, media_type: str, title: str | None, pages: int | None = None) -> Document:
        return Document("".join(self.parts), tuple(self.blocks), media_type, title, pages)


def _suffix(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def _decode_text(data: bytes) -> str | None:
    """The text of ``data`` if it is UTF-8/UTF-16 text (with or without a BOM), else None."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _looks_like_html(text: str) -> bool:
    head = text.lstrip()[:512].lower()
    return head.startswith(("<!doctype html", "<html")) or "<body" in head


def detect_media_type(data: bytes, filename: str) -> str:
    """The supported media type of ``data``, from its bytes first and its name second."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            raise CorruptFileError(f"{filename!r} is a damaged zip archive") from None
        if "word/document.xml" in names:
            return DOCX
        if "xl/workbook.xml" in names or "ppt/presentation.xml" in names:
            kind = "a spreadsheet" if "xl/workbook.xml" in names else "a presentation"
            raise UnsupportedFileError(
                f"{filename!r} is {kind} (Office Open XML); supported: {_supported_list()}"
            )
        raise UnsupportedFileError(
            f"{filename!r} is a zip archive; upload the files inside it one by one"
        )
    for signature, image_type in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return image_type
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, name in SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFileError(f"{filename!r} is {name}; supported: {_supported_list()}")
    text = _decode_text(data)
    if text is None:
        raise UnsupportedFileError(
            f"{filename!r} is binary data of an unknown kind; supported: {_supported_list()}"
        )
    suffix = _suffix(filename)
    if suffix in HTML_SUFFIXES or (suffix not in MARKDOWN_SUFFIXES and _looks_like_html(text)):
        return HTML
    if suffix in MARKDOWN_SUFFIXES:
        return MARKDOWN
    return TEXT


def _supported_list() -> str:
    images = ", ".join(IMAGE_MEDIA_TYPES.values())
    return f"{', '.join(SUPPORTED_MEDIA_TYPES.values())}, and images ({images}) read by OCR"


@functools.cache
def registered_ocr() -> OcrReader | None:
    """The plugin registry's OCR engine as a reader (English), or None without one."""
    from llmasos.plugins import get_registry

    try:
        engine = get_registry().perception_engine("ocr")()
    except LLMasOSError as error:
        logger.info("no OCR for scanned PDFs: %s", error)
        return None

    def read(image: bytes) -> str:
        return str(engine.read(image, language=None).text)

    return read


def convert(
    data: bytes,
    filename: str,
    *,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED,
    ocr: OcrReader | None = None,
) -> Document:
    """Convert an uploaded file to a `Document`; see the module docstring for what is read."""
    media_type = detect_media_type(data, filename)
    if media_type in IMAGE_MEDIA_TYPES:
        document = _convert_image(data, filename, media_type, ocr)
    elif media_type == PDF:
        document = _convert_pdf(data, filename, ocr)
    elif media_type == DOCX:
        document = _convert_docx(data, filename, max_unpacked_bytes)
    else:
        text = _decode_text(data) or ""
        if media_type == HTML:
            document = _convert_html(text)
        elif media_type == MARKDOWN:
            document = _convert_markdown(text)
        else:
            document = _convert_plain(text)
    if not document.blocks:
        hint = ""
        if media_type in IMAGE_MEDIA_TYPES:
            hint = " (OCR read no printed text in the image)"
        elif media_type == PDF:
            hint = (
                " (its pages are images and OCR read no text from them)"
                if ocr
                else (" (a scanned PDF has images, not text, and no OCR engine is installed)")
            )
        raise UnsupportedFileError(f"{filename!r} contains no text{hint}")
    return document


def _paragraphs(text: str) -> Iterator[str]:
    for paragraph in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").replace("\r", "\n")):
        if paragraph.strip():
            yield paragraph


def _convert_plain(text: str) -> Document:
    builder = _Builder()
    for paragraph in _paragraphs(text):
        builder.add(paragraph, normalize=False)
    title = builder.parts[0].splitlines()[0].strip()[:200] if builder.parts else None
    return builder.build(TEXT, title)


def _convert_markdown(text: str) -> Document:
    from markdown_it import MarkdownIt

    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    tokens = MarkdownIt("commonmark").enable("table").parse("\n".join(lines))
    builder = _Builder()
    title: str | None = None
    pending_heading: int | None = None
    for token in tokens:
        if token.type == "heading_open":
            pending_heading = int(token.tag[1])
            continue
        if token.type == "inline" and pending_heading is not None:
            builder.heading(pending_heading, token.content)
            if title is None and pending_heading == 1:
                title = " ".join(token.content.split())
            pending_heading = None
            continue
        if token.map is None or token.nesting == -1:
            continue
        if token.type == "list_item_open" and token.level == 1:
            start, end = token.map
            builder.add("\n".join(lines[start:end]), normalize=False)
            continue
        if token.level != 0:
            continue
        if token.type in {"paragraph_open", "fence", "code_block", "html_block", "hr"}:
            if token.type == "hr":
                continue
            start, end = token.map
            builder.add("\n".join(lines[start:end]), normalize=False)
        elif token.type in {"blockquote_open", "table_open"}:
            start, end = token.map
            builder.add("\n".join(lines[start:end]), normalize=False)
    return builder.build(MARKDOWN, title)


def _convert_html(text: str) -> Document:
    from bs4 import BeautifulSoup
    from bs4.element import Comment, NavigableString, Tag

    soup = BeautifulSoup(text, "html.parser")
    title_tag = soup.find("title")
    title = " ".join(title_tag.get_text().split()) if isinstance(title_tag, Tag) else None
    builder = _Builder()
    buffer: list[str] = []

    def flush() -> None:
        if buffer:
            builder.add("".join(buffer))
            buffer.clear()

    def walk(node: Any) -> None:
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                buffer.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if name in SKIPPED_TAGS:
                continue
            if name in HEADING_TAGS:
                flush()
                builder.heading(HEADING_TAGS[name], child.get_text(" "))
            elif name == "pre":
                flush()
                builder.add(child.get_text(), normalize=False)
            elif name in {"td", "th"}:
                buffer.append(" " + child.get_text(" ") + " |")
            elif name in BLOCK_TAGS:
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(soup.body if isinstance(soup.body, Tag) else soup)
    flush()
    if title is None:
        title = next((b_path[-1] for b in builder.blocks if (b_path := b.headings)), None)
    return builder.build(HTML, title)


def _convert_pdf(data: bytes, filename: str, ocr: OcrReader | None) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise CorruptFileError(f"{filename!r} is an encrypted PDF; remove the password first")
        builder = _Builder()
        scanned = 0
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if not text.strip() and ocr is not None:
                if scanned == MAX_OCR_PAGES:
                    logger.warning(
                        "%s: OCR stopped after %d scanned pages", filename, MAX_OCR_PAGES
                    )
                else:
                    scanned += 1
                    text = _read_images(page, ocr, f"{filename} page {number}")
            for paragraph in _paragraphs(text):
                builder.add(paragraph, page=number)
        metadata = reader.metadata
        title = (metadata.title if metadata else None) or None
        return builder.build(PDF, title, len(reader.pages))
    except CorruptFileError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CorruptFileError(f"{filename!r} is not a readable PDF: {error}") from None


def _convert_image(data: bytes, filename: str, media_type: str, ocr: OcrReader | None) -> Document:
    """An image file as one page of the text OCR reads in it."""
    kind = IMAGE_MEDIA_TYPES[media_type].upper()
    if ocr is None:
        raise UnsupportedFileError(
            f"{filename!r} is a {kind} image; reading its text needs an OCR engine "
            "(tesseract-ocr) and none is installed"
        )
    try:
        text = ocr(data)
    except LLMasOSError as error:
        raise CorruptFileError(
            f"{filename!r}: OCR could not read the {kind} image: {error}"
        ) from None
    builder = _Builder()
    for paragraph in _paragraphs(text):
        builder.add(paragraph, page=1)
    return builder.build(media_type, None, 1)


def _read_images(page: Any, ocr: OcrReader, where: str) -> str:
    """The OCR text of a page's images, top to bottom as stored; an image that cannot be
    read is skipped and logged (the rest of the document still counts)."""
    texts: list[str] = []
    try:
        images = list(page.images)
    except Exception as error:  # pypdf raises many types for an odd image stream
        logger.warning("%s: its images cannot be extracted: %s", where, error)
        return ""
    for image in images:
        try:
            texts.append(ocr(image.data))
        except LLMasOSError as error:
            logger.warning("%s: OCR of %s failed: %s", where, image.name, error)
    return "\n\n".join(t for t in texts if t.strip())


def _convert_docx(data: bytes, filename: str, max_unpacked_bytes: int) -> Document:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > max_unpacked_bytes:
        raise CorruptFileError(
            f"{filename!r} unpacks to {unpacked:,} bytes, over the limit of "
            f"{max_unpacked_bytes:,} (a zip bomb?)"
        )
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        word = docx.Document(io.BytesIO(data))
    except Exception as error:  # python-docx raises many kinds for a damaged package
        raise CorruptFileError(f"{filename!r} is not a readable Word document: {error}") from None
    builder = _Builder()
    title = word.core_properties.title or None
    for item in word.iter_inner_content():
        if isinstance(item, Paragraph):
            style = item.style.name if item.style is not None else ""
            match = WORD_HEADING.match(style or "")
            if style == "Title":
                builder.heading(1, item.text)
                title = title or " ".join(item.text.split()) or None
            elif match:
                builder.heading(int(match.group(1)) + 1, item.text)
            else:
                builder.add(item.text)
        elif isinstance(item, Table):
            for row in item.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                builder.add(" | ".join(cells))
    return builder.build(DOCX, title)
