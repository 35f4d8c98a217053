"""Conversion of real files to text with structure, and the clear errors for everything else."""

from __future__ import annotations

import io
import zipfile

import pytest

from llmasos.knowledge.convert import (
    DOCX,
    HTML,
    MARKDOWN,
    PDF,
    TEXT,
    CorruptFileError,
    UnsupportedFileError,
    convert,
    detect_media_type,
    registered_ocr,
)
from tests.knowledge.documents import docx_bytes, pdf_bytes


def texts(document):
    return [document.block_text(block) for block in document.blocks]


def test_blocks_tile_the_text_and_quote_it_exactly():
    source = "# Budget\n\nThe 2026 budget is 4 million.\n\n## Travel\n\nTravel costs fell.\n"
    document = convert(source.encode(), "plan.md")
    for block in document.blocks:
        assert document.text[block.start : block.end] == document.block_text(block)
    assert "\n\n".join(texts(document)) == document.text


def test_markdown_headings_give_each_block_its_section_path():
    source = (
        "# Handbook\n\nIntro paragraph.\n\n## Leave\n\nTwenty days a year.\n\n"
        "- item one\n- item two\n\n```\n# not a heading\n```\n\n### Sick leave\n\nTen days.\n\n"
        "# Appendix\n\nLast words.\n"
    )
    document = convert(source.encode(), "handbook.md")
    assert document.media_type == MARKDOWN
    assert document.title == "Handbook"
    by_text = {document.block_text(b): b for b in document.blocks}
    assert by_text["Twenty days a year."].headings == ("Handbook", "Leave")
    assert by_text["- item one"].headings == ("Handbook", "Leave")
    assert by_text["```\n# not a heading\n```"].heading is False
    assert by_text["Ten days."].headings == ("Handbook", "Leave", "Sick leave")
    assert by_text["Last words."].headings == ("Appendix",)
    assert by_text["Leave"].heading is True


def test_html_drops_scripts_and_keeps_headings_and_tables():
    source = """<!doctype html><html><head><title>Office guide</title>
    <style>p { color: red }</style><script>var secret = 1;</script></head>
    <body><nav>Home</nav><h1>Guide</h1><p>Doors open at <b>eight</b>.</p>
    <h2>Parking</h2><p>Use level   two.</p><table><tr><td>Mon</td><td>open</td></tr></table>
    <!-- a comment --></body></html>"""
    document = convert(source.encode(), "guide.html")
    assert document.media_type == HTML
    assert document.title == "Office guide"
    assert "secret" not in document.text and "color" not in document.text
    assert "a comment" not in document.text
    by_text = {document.block_text(b): b for b in document.blocks}
    assert by_text["Doors open at eight."].headings == ("Guide",)
    assert by_text["Use level two."].headings == ("Guide", "Parking")
    assert any("Mon" in t and "open" in t for t in by_text)


def test_html_is_detected_without_an_extension():
    assert detect_media_type(b"<!DOCTYPE html><html><body><p>x</p></body></html>", "page") == HTML


def test_plain_text_paragraphs_and_utf16():
    document = convert("Line one.\n\nSecond paragraph\nstill second.\n".encode("utf-16"), "a.txt")
    assert document.media_type == TEXT
    assert texts(document) == ["Line one.", "Second paragraph\nstill second."]


def test_pdf_pages_and_title():
    data = pdf_bytes(
        [["Quarterly report", "Revenue grew."], ["Costs (in euros) fell."]], title="Q3"
    )
    document = convert(data, "report.pdf")
    assert document.media_type == PDF
    assert document.pages == 2
    assert document.title == "Q3"
    pages = {document.block_text(b): b.page for b in document.blocks}
    assert any("Revenue grew." in t and page == 1 for t, page in pages.items())
    assert any("Costs (in euros) fell." in t and page == 2 for t, page in pages.items())


def test_pdf_without_text_says_so():
    with pytest.raises(UnsupportedFileError, match=r"no text.*scanned"):
        convert(pdf_bytes([[]]), "scan.pdf")
    with pytest.raises(UnsupportedFileError, match=r"no text.*OCR read no text"):
        convert(pdf_bytes([[]]), "scan.pdf", ocr=lambda image: "")


def scanned_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages are only images of printed lines (what a scanner makes)."""
    from PIL import Image

    from tests.perception.media_fixtures import text_png

    images = [Image.open(io.BytesIO(text_png(lines))).convert("RGB") for lines in pages]
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=100)
    return out.getvalue()


def test_scanned_pdf_pages_are_read_by_the_registered_ocr():
    reader = registered_ocr()
    if reader is None:
        pytest.skip("no OCR engine (make setup installs tesseract-ocr)")
    data = scanned_pdf([["Quarterly budget review"], ["The harbour closes at noon"]])
    document = convert(data, "scan.pdf", ocr=reader)
    pages = {document.block_text(b): b.page for b in document.blocks}
    text = " ".join(pages).lower()
    assert "budget" in text and "harbour" in text
    assert {page for t, page in pages.items() if "budget" in t.lower()} == {1}
    assert {page for t, page in pages.items() if "harbour" in t.lower()} == {2}
    seen: list[int] = []
    convert(pdf_bytes([["Typed text"]]), "typed.pdf", ocr=lambda image: seen.append(1) or "")
    assert not seen  # a page with a text layer is never OCR'd


def test_docx_headings_paragraphs_and_tables():
    data = docx_bytes(
        "Team notes",
        [("Goals", ["Ship the console."]), ("Risks", ["Hiring is slow."])],
        table=[["owner", "task"], ["Ana", "budget"]],
    )
    document = convert(data, "notes.docx")
    assert document.media_type == DOCX
    assert document.title == "Team notes"
    by_text = {document.block_text(b): b for b in document.blocks}
    assert by_text["Ship the console."].headings == ("Team notes", "Goals")
    assert by_text["Hiring is slow."].headings == ("Team notes", "Risks")
    assert "Ana | budget" in by_text


def test_an_image_is_read_by_the_registered_ocr_as_one_page():
    from PIL import Image

    from tests.perception.media_fixtures import text_png

    reader = registered_ocr()
    if reader is None:
        pytest.skip("no OCR engine (make setup installs tesseract-ocr)")
    png = text_png(["The harbour closes at noon", "", "Boats wait outside"])
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(jpeg, format="JPEG", quality=90)
    for data, name, media_type in (
        (png, "photo.txt", "image/png"),
        (jpeg.getvalue(), "scan", "image/jpeg"),
    ):
        document = convert(data, name, ocr=reader)  # the bytes decide, not the name
        assert document.media_type == media_type and document.pages == 1
        assert "harbour" in document.text.lower() and "boats" in document.text.lower()
        assert {b.page for b in document.blocks} == {1}


def test_an_image_without_ocr_or_text_says_so():
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 20
    with pytest.raises(UnsupportedFileError, match=r"is a PNG image; .*needs an OCR engine"):
        convert(png, "photo.png")
    with pytest.raises(UnsupportedFileError, match="OCR read no printed text"):
        convert(png, "photo.png", ocr=lambda image: "  \n")
    webp = b"RIFF\x10\x00\x00\x00WEBPVP8 "
    with pytest.raises(UnsupportedFileError, match="is a WEBP image"):
        convert(webp, "photo.webp")
    with pytest.raises(UnsupportedFileError, match="WAV audio"):
        convert(b"RIFF\x10\x00\x00\x00WAVEfmt ", "voice.wav")


@pytest.mark.parametrize(
    ("data", "name", "detected"),
    [
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 20, "tool", "ELF executable"),
        (b"\x00\x01\x02\x03binary", "blob.bin", "binary data"),
        (b"\x1f\x8b\x08\x00", "logs.gz", "gzip"),
    ],
)
def test_unsupported_files_name_what_they_are(data, name, detected):
    with pytest.raises(UnsupportedFileError, match=detected) as caught:
        convert(data, name)
    assert caught.value.status_code == 400
    assert "supported: txt, md, html, pdf, docx, and images (png" in caught.value.message


def test_zip_that_is_not_a_word_document():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "hello")
    with pytest.raises(UnsupportedFileError, match="zip archive"):
        convert(out.getvalue(), "bundle.zip")


def test_corrupt_pdf_and_docx():
    with pytest.raises(CorruptFileError, match="not a readable PDF"):
        convert(b"%PDF-1.4\nthis is not really a pdf", "broken.pdf")
    with pytest.raises(CorruptFileError, match="damaged zip"):
        convert(b"PK\x03\x04 truncated", "broken.docx")


def test_docx_zip_bomb_is_refused_before_parsing():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"<" + b"a" * (8 << 20))
    data = out.getvalue()
    assert len(data) < 100_000
    with pytest.raises(CorruptFileError, match="zip bomb"):
        convert(data, "bomb.docx", max_unpacked_bytes=1 << 20)


def test_empty_text_file_says_it_has_no_text():
    with pytest.raises(UnsupportedFileError, match="contains no text"):
        convert(b"  \n\n ", "empty.txt")
