"""Images inside chat messages, as the kernel carries them to a backend that sees.

A face puts each image where it sits in a message as a content part
``{"type": "image", "image": <the image file's bytes>}`` (decoded and checked once, at the
face), beside ``{"type": "text", "text": ...}`` parts. Before the chat template runs,
`split_images` takes the bytes out: the template sees ``{"type": "image"}`` placeholders (the
Hugging Face convention vision-language templates follow) and the backend's processor gets
the images in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmasos.errors import InvalidRequestError
from llmasos.types import ChatMessage

IMAGE_PART = "image"


def image_part(data: bytes) -> dict[str, object]:
    """The content part that carries one image to the kernel."""
    return {"type": IMAGE_PART, IMAGE_PART: data}


def split_images(messages: Sequence[ChatMessage]) -> tuple[list[ChatMessage], list[bytes]]:
    """``messages`` with their image parts reduced to placeholders, and the images in order."""
    images: list[bytes] = []
    result: list[ChatMessage] = []
    for index, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            result.append(message)
            continue
        parts: list[object] = []
        for number, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == IMAGE_PART:
                data = part.get(IMAGE_PART)
                if not isinstance(data, bytes) or not data:
                    raise InvalidRequestError(
                        "an image part must carry the image file's bytes",
                        param=f"messages[{index}].content[{number}]",
                    )
                images.append(data)
                parts.append({"type": IMAGE_PART})
            else:
                parts.append(part)
        result.append({**message, "content": parts})
    return result, images


def text_part(text: str) -> dict[str, object]:
    return {"type": "text", "text": text}
