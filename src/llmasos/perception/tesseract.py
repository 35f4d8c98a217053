"""The embedded OCR engine: Debian's tesseract, run as a program on the image's bytes.

Tesseract's TSV output gives each word's box and confidence; the page text is rebuilt
from it line by line (no space between two CJK characters, as Chinese is written). The
image is checked first (`media.sniff`, then Pillow for its size): something that is not
an image is refused naming what it is, and a decompression bomb by its pixel count. Then it
is `prepared`: grey, its lighting flattened, enlarged when small (the boxes are given in
the original's pixels).
Languages are tesseract's data files (``eng``, ``chi_sim``, joined with ``+``); ISO codes
(``en``, ``zh``) are accepted as aliases.
"""

from __future__ import annotations

import csv
import functools
import io
import shutil
import subprocess
import unicodedata

from llmasos.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidRequestError,
    UnsupportedError,
)
from llmasos.perception.interface import OcrInterface, OcrResult, OcrWord
from llmasos.perception.media import sniff

MAX_PIXELS = 40_000_000
ALIASES = {"en": "eng", "zh": "chi_sim", "zh-cn": "chi_sim", "zh-hans": "chi_sim", "de": "deu"}
"""Formats tesseract's leptonica reads in every build; others are converted to PNG."""


@functools.cache
def _program() -> str:
    path = shutil.which("tesseract")
    if path is None:
        raise BackendUnavailableError(
            "OCR needs tesseract: apt-get install tesseract-ocr tesseract-ocr-eng (make setup does)"
        )
    return path


@functools.cache
def tesseract_languages() -> tuple[str, ...]:
    listing = subprocess.run(
        [_program(), "--list-langs"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return tuple(
        sorted(
            line.strip()
            for line in listing.splitlines()[1:]
            if line.strip() and line.strip() != "osd"
        )
    )


def _is_cjk(character: str) -> bool:
    return unicodedata.east_asian_width(character) in ("W", "F")


def _join(words: list[str]) -> str:
    text = ""
    for word in words:
        if text and not (_is_cjk(text[-1]) and _is_cjk(word[0])):
            text += " "
        text += word
    return text


def check_image(data: bytes) -> tuple[str, int, int]:
    """``(media type, width, height)`` of an image file; 400 naming what it is otherwise."""
    kind = sniff(data)
    if kind == "empty":
        raise InvalidRequestError("the image is empty", param="file")
    if not kind.startswith("image/"):
        raise InvalidRequestError(
            f"the file is {kind}, not an image (send PNG, JPEG, WebP, GIF, BMP or TIFF)",
            param="file",
        )
    try:
        from PIL import Image
    except ImportError:
        raise BackendUnavailableError(
            "reading images needs Pillow: pip install 'llmasos[perception]'"
        ) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as error:  # Pillow raises many types for a broken file
        raise InvalidRequestError(
            f"the {kind} image cannot be read: {error}", param="file"
        ) from None
    if width * height > MAX_PIXELS:
        raise InvalidRequestError(
            f"the image is {width}x{height}; at most {MAX_PIXELS // 1_000_000} megapixels",
            param="file",
        )
    return kind, width, height


UPSCALE_BELOW = 1000
"""An image whose longer side is shorter than this many pixels is read at twice its size:
tesseract reads text best at a height of 20 pixels or more, and small screenshots and
photographs have less."""


def prepared(data: bytes) -> tuple[bytes, int]:
    """The image as tesseract reads it best, as PNG, and the factor it was enlarged by.

    Grey, with its lighting flattened: each pixel is divided by the page's brightness around
    it (a 7-pixel maximum, which takes the strokes out, then a blur; estimated on a copy at
    most 600 pixels wide, so a large photograph costs little), so a page photographed under
    a lamp is white from edge to edge. Tesseract's own binarization uses one threshold for
    the whole page and loses the darker half of such a page. A rendered page is white
    already and stays as it was."""
    import numpy as np
    from PIL import Image, ImageFilter

    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L")
    factor = max(1, max(grey.size) // 600)
    small = grey.reduce(factor) if factor > 1 else grey
    background = small.filter(ImageFilter.MaxFilter(7)).filter(ImageFilter.GaussianBlur(4))
    if factor > 1:
        background = background.resize(grey.size, Image.Resampling.BILINEAR)
    ratio = np.asarray(grey, dtype=np.float32) / np.maximum(
        np.asarray(background, dtype=np.float32), 1.0
    )
    flat = Image.fromarray(np.clip(ratio * 255, 0, 255).astype(np.uint8))
    scale = 2 if max(flat.size) < UPSCALE_BELOW else 1
    if scale > 1:
        flat = flat.resize((flat.width * scale, flat.height * scale), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    flat.save(out, format="PNG")
    return out.getvalue(), scale


class TesseractEngine(OcrInterface):
    name = "tesseract"

    def languages(self) -> list[str]:
        return list(tesseract_languages())

    def language_of(self, language: str | None) -> str:
        """The tesseract language string for a request's ``language`` (default ``eng``)."""
        parts = [ALIASES.get(p.strip().lower(), p.strip()) for p in (language or "eng").split("+")]
        available = self.languages()
        missing = [p for p in parts if p not in available]
        if missing:
            raise UnsupportedError(
                f"tesseract cannot read {'+'.join(missing)!r} (available: {', '.join(available)}; "
                "install more with apt-get install tesseract-ocr-LANG)",
                param="language",
            )
        return "+".join(parts)

    def read(self, image: bytes, *, language: str | None) -> OcrResult:
        _, width, height = check_image(image)
        languages = self.language_of(language)
        data, scale = prepared(image)
        result = subprocess.run(
            [_program(), "stdin", "stdout", "-l", languages, "tsv"],
            input=data,
            capture_output=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip().splitlines()
            raise BackendError(f"tesseract failed: {reason[-1] if reason else 'no output'}")
        words, lines = self._words(result.stdout.decode("utf-8", errors="replace"), scale)
        return OcrResult(
            text="\n".join(_join(line) for line in lines),
            language=languages,
            width=width,
            height=height,
            words=tuple(words),
            engine=self.name,
        )

    @staticmethod
    def _words(tsv: str, scale: int = 1) -> tuple[list[OcrWord], list[list[str]]]:
        words: list[OcrWord] = []
        lines: list[list[str]] = []
        keys: dict[tuple[str, str, str, str], int] = {}
        reader = csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            text = (row.get("text") or "").strip()
            if row.get("level") != "5" or not text:
                continue
            key = (row["page_num"], row["block_num"], row["par_num"], row["line_num"])
            if key not in keys:
                keys[key] = len(lines)
                lines.append([])
            line = keys[key]
            lines[line].append(text)
            words.append(
                OcrWord(
                    text=text,
                    left=int(row["left"]) // scale,
                    top=int(row["top"]) // scale,
                    width=int(row["width"]) // scale,
                    height=int(row["height"]) // scale,
                    confidence=round(max(0.0, float(row["conf"])), 2),
                    line=line,
                )
            )
        return words, lines
