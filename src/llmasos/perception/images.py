"""Images in chat requests: getting their bytes, and the OCR note a text-only model reads.

An image arrives as a ``data:`` URL, an http(s) URL (fetched only when the settings allow,
and then only from public addresses through `llmasos.net.fetch_public`), or base64 (Ollama's
``images``). A model that cannot see gets, in place of each image, the text OCR read from
it inside a marked block that says so, with a one-line account of the layout; the caller
reports which path was taken (`ImageInputReport`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from llmasos.errors import InvalidRequestError, PermissionDeniedError
from llmasos.net import fetch_public
from llmasos.perception.interface import OcrResult

MAX_IMAGE_BYTES = 20 * 2**20


def image_from_base64(text: str, *, param: str) -> bytes:
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("the image is not valid base64", param=param) from None
    if not data:
        raise InvalidRequestError("the image is empty", param=param)
    return data


def image_from_url(url: str, *, allow_fetch: bool, param: str) -> bytes:
    """The bytes of an ``image_url``: a data URL, or an http(s) URL where permitted."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header:
            raise InvalidRequestError("a data: image URL must be base64 encoded", param=param)
        return image_from_base64(payload, param=param)
    if url.startswith(("http://", "https://")):
        if not allow_fetch:
            raise PermissionDeniedError(
                "fetching image URLs is off on this server (send a data: URL, or start it "
                "with --fetch-image-urls)",
                param=param,
            )
        return fetch_public(url, max_bytes=MAX_IMAGE_BYTES)
    raise InvalidRequestError("image_url must be a data: or http(s) URL", param=param)


def layout_summary(result: OcrResult) -> str:
    """A one-line account of where the text sits, from the OCR boxes."""
    if not result.words:
        return "no readable text"
    lines = len({w.line for w in result.words})
    top = min(w.top for w in result.words) / max(1, result.height)
    bottom = max(w.top + w.height for w in result.words) / max(1, result.height)
    where = (
        "the whole image"
        if bottom - top > 0.6
        else ("the upper part" if bottom < 0.6 else "the lower part" if top > 0.4 else "the middle")
    )
    return (
        f"{len(result.words)} words on {lines} line{'s' if lines != 1 else ''}, covering "
        f"{where}; mean OCR confidence {result.confidence:.0f}%"
    )


def ocr_note(number: int, result: OcrResult) -> str:
    """The block that replaces image ``number`` for a model that cannot see it."""
    head = (
        f"[Image {number}: you cannot see this image. Below is the text that OCR "
        f"({result.engine}) read from it ({result.width}x{result.height} px, "
        f"{layout_summary(result)}). It may contain recognition errors.]"
    )
    body = result.text.strip() or "(no text found)"
    return f"{head}\n{body}\n[End of image {number}]"


@dataclass
class ImageInputReport:
    """What the response's ``image_input`` field says: how the model got the images."""

    path: str = "ocr"
    """``ocr``: the model read OCR text in place of each image (the only path today)."""
    images: int = 0
    engine: str = ""
    characters: list[int] = field(default_factory=list)
    """Characters of OCR text per image."""

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "images": self.images,
            "engine": self.engine,
            "characters": self.characters,
        }
