"""Images in chat requests: getting their bytes, and the OCR note a text-only model reads.

An image arrives as a ``data:`` URL, an http(s) URL (fetched only when the settings allow,
and then only from public addresses through `llmasos.net.fetch_public`), or base64 (Ollama's
``images``); over `MAX_IMAGE_BYTES` it is refused (413). A model that sees gets the bytes,
checked to be an image (`checked_image`). A model that cannot see gets, in place of each
image, the text OCR read from it inside a marked block that says so, with a one-line account
of the layout; the caller reports which path was taken (`ImageInputReport`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from llmasos.errors import InvalidRequestError, PayloadTooLargeError, PermissionDeniedError
from llmasos.net import fetch_public
from llmasos.perception.interface import OcrResult
from llmasos.perception.tesseract import check_image

MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGES = 16
"""Images one chat request may hold."""


def image_from_base64(text: str, *, param: str) -> bytes:
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError("the image is not valid base64", param=param) from None
    if not data:
        raise InvalidRequestError("the image is empty", param=param)
    if len(data) > MAX_IMAGE_BYTES:
        raise PayloadTooLargeError(
            f"the image is {len(data) / 2**20:.1f} MiB; at most {MAX_IMAGE_BYTES // 2**20} MiB",
            param=param,
        )
    return data


def checked_image(data: bytes, *, param: str) -> tuple[str, int, int]:
    """``(media type, width, height)`` of an image for a model that sees it; 400 naming
    what the bytes are when they are not an image (the check OCR makes too)."""
    try:
        return check_image(data)
    except InvalidRequestError as error:
        error.param = param
        raise


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
    """``vision``: the model saw the images themselves; ``ocr``: it read OCR text in place
    of each image."""
    images: int = 0
    engine: str = ""
    """The OCR engine (``ocr`` path)."""
    characters: list[int] = field(default_factory=list)
    """Characters of OCR text per image (``ocr`` path)."""
    sizes: list[str] = field(default_factory=list)
    """``WIDTHxHEIGHT`` of each image (``vision`` path)."""

    @classmethod
    def for_model(cls, sees_images: bool) -> ImageInputReport:
        return cls(path="vision" if sees_images else "ocr")

    def add_seen(self, facts: tuple[str, int, int]) -> None:
        _, width, height = facts
        self.images += 1
        self.sizes.append(f"{width}x{height}")

    def as_dict(self) -> dict[str, object]:
        if self.path == "vision":
            return {"path": self.path, "images": self.images, "sizes": self.sizes}
        return {
            "path": self.path,
            "images": self.images,
            "engine": self.engine,
            "characters": self.characters,
        }
