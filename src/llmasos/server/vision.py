"""Images in chat requests (OpenAI ``image_url`` parts, Ollama ``images``): the model sees
them, or reads their OCR text.

Every image is fetched or decoded and checked once here (`llmasos.perception.images`):
something that is not an image is refused naming what it is, one too large is 413, more than
`MAX_IMAGES` in a request is 400. Then the path is chosen by the model's manifest:

* ``vision``: the model has the ``vision`` capability (a vision-language model, see
  docs/design/perception.md). Each image part keeps its place and carries the image's bytes;
  the face's ``kernel_messages`` hands them to the kernel as image parts
  (`llmasos.kernel.media`), and the model's processor expands them into image tokens.
* ``ocr``: any other model. Each image is read by OCR and replaced, in place, by a marked
  block of its text (`llmasos.perception.images.ocr_note`).

The caller adds the returned `ImageInputReport` to its response as ``image_input`` so
clients know which path was taken.
"""

from __future__ import annotations

import asyncio

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.models import ModelStoreInterface
from llmasos.perception.images import (
    MAX_IMAGES,
    ImageInputReport,
    checked_image,
    image_from_base64,
    image_from_url,
    ocr_note,
)
from llmasos.perception.service import PerceptionService
from llmasos.server.ollama.generate.protocol import ChatMessageBody, GenerateBody
from llmasos.server.openai.chat.protocol import ChatMessageParam, ImagePart, TextPart

IMAGE_PART_TYPES = ("image_url", "image")


class ImageReader:
    def __init__(
        self,
        perception: PerceptionService,
        *,
        fetch_image_urls: bool,
        store: ModelStoreInterface | None = None,
        default_model: str | None = None,
    ) -> None:
        self.perception = perception
        self.fetch_image_urls = fetch_image_urls
        self.store = store
        self.default_model = default_model

    def sees_images(self, model: str | None) -> bool:
        """True when ``model`` (a store name) is a vision-language model. A name the store
        does not know (a remote model, a typo) takes the OCR path; generation then says
        what is wrong with the name."""
        name = model or self.default_model
        if self.store is None or not name:
            return False
        try:
            return self.store.manifest(name).sees_images
        except LLMasOSError:
            return False

    async def _note(self, image: bytes, report: ImageInputReport, tenant: str, param: str) -> str:
        try:
            result = await self.perception.read_image(image, tenant=tenant)
        except LLMasOSError as error:
            if error.param == "file":  # name the message part, not an upload field
                error.param = param
            raise
        report.images += 1
        report.engine = result.engine
        report.characters.append(len(result.text))
        return ocr_note(report.images, result)

    @staticmethod
    def _see(image: bytes, report: ImageInputReport, param: str) -> bytes:
        report.add_seen(checked_image(image, param=param))
        return image

    async def openai_messages(
        self, messages: list[ChatMessageParam], tenant: str, model: str | None = None
    ) -> tuple[list[ChatMessageParam], ImageInputReport | None]:
        """``messages`` with every image part either carrying its bytes (a model that sees)
        or replaced by its OCR note."""
        count = sum(
            sum(1 for p in m.content if p.type in IMAGE_PART_TYPES)
            for m in messages
            if isinstance(m.content, list)
        )
        if count == 0:
            return messages, None
        _check_count(count, "messages")
        report = ImageInputReport.for_model(self.sees_images(model))
        result: list[ChatMessageParam] = []
        for index, message in enumerate(messages):
            if not isinstance(message.content, list):
                result.append(message)
                continue
            parts: list[TextPart | ImagePart] = []
            for number, part in enumerate(message.content):
                param = f"messages[{index}].content[{number}]"
                if not isinstance(part, ImagePart) or part.type not in IMAGE_PART_TYPES:
                    parts.append(part)  # kernel_messages checks it
                    continue
                url = part.url()
                if url is None:
                    raise InvalidRequestError("an image part needs image_url.url", param=param)
                image = await asyncio.to_thread(
                    image_from_url, url, allow_fetch=self.fetch_image_urls, param=param
                )
                if report.path == "vision":
                    parts.append(part.with_data(self._see(image, report, param)))
                else:
                    note = await self._note(image, report, tenant, param)
                    parts.append(TextPart(type="text", text=note))
            result.append(message.model_copy(update={"content": parts}))
        return result, report

    async def ollama_messages(
        self, messages: list[ChatMessageBody], tenant: str, model: str | None = None
    ) -> tuple[list[ChatMessageBody], ImageInputReport | None]:
        count = sum(len(m.images or ()) for m in messages)
        if count == 0:
            return messages, None
        _check_count(count, "messages")
        report = ImageInputReport.for_model(self.sees_images(model))
        result: list[ChatMessageBody] = []
        for index, message in enumerate(messages):
            if not message.images:
                result.append(message)
                continue
            params = [f"messages[{index}].images[{n}]" for n in range(len(message.images))]
            images = [
                image_from_base64(data, param=param)
                for data, param in zip(message.images, params, strict=True)
            ]
            if report.path == "vision":
                seen = [self._see(i, report, p) for i, p in zip(images, params, strict=True)]
                result.append(message.with_image_data(seen))
                continue
            notes = [
                await self._note(image, report, tenant, param)
                for image, param in zip(images, params, strict=True)
            ]
            content = "\n\n".join([*notes, message.content or ""]).strip()
            result.append(message.model_copy(update={"content": content, "images": None}))
        return result, report

    async def ollama_generate(
        self, body: GenerateBody, tenant: str
    ) -> tuple[GenerateBody, ImageInputReport]:
        """``/api/generate``'s ``images``: checked and kept for a model that sees, else read
        by OCR into the prompt."""
        images = body.images or []
        _check_count(len(images), "images")
        report = ImageInputReport.for_model(self.sees_images(body.model))
        params = [f"images[{n}]" for n in range(len(images))]
        decoded = [
            image_from_base64(data, param=param) for data, param in zip(images, params, strict=True)
        ]
        if report.path == "vision":
            seen = [self._see(i, report, p) for i, p in zip(decoded, params, strict=True)]
            return body.with_image_data(seen), report
        notes = [
            await self._note(image, report, tenant, param)
            for image, param in zip(decoded, params, strict=True)
        ]
        prompt = "\n\n".join([*notes, body.prompt or ""]).strip()
        return body.model_copy(update={"prompt": prompt, "images": None}), report


def _check_count(count: int, param: str) -> None:
    if count > MAX_IMAGES:
        raise InvalidRequestError(
            f"the request holds {count} images; at most {MAX_IMAGES} are accepted", param=param
        )
