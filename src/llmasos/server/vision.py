"""Images in chat requests (OpenAI ``image_url`` parts, Ollama ``images``), for models
that cannot see: each image is read by OCR and replaced, in place, by a marked block of
its text (`llmasos.perception.images.ocr_note`). The caller adds the returned
`ImageInputReport` to its response as ``image_input`` so clients know the model read OCR
text, not the image. No model in the store can take pixels yet (docs/design/perception.md
says what the vision path needs); when one can, this is where the choice is made.
"""

from __future__ import annotations

import asyncio

from llmasos.errors import InvalidRequestError, LLMasOSError
from llmasos.perception.images import ImageInputReport, image_from_base64, image_from_url, ocr_note
from llmasos.perception.service import PerceptionService
from llmasos.server.ollama.generate.protocol import ChatMessageBody
from llmasos.server.openai.chat.protocol import ChatMessageParam, ImagePart, TextPart

IMAGE_PART_TYPES = ("image_url", "image")


class ImageReader:
    def __init__(self, perception: PerceptionService, *, fetch_image_urls: bool) -> None:
        self.perception = perception
        self.fetch_image_urls = fetch_image_urls

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

    async def openai_messages(
        self, messages: list[ChatMessageParam], tenant: str
    ) -> tuple[list[ChatMessageParam], ImageInputReport | None]:
        """``messages`` with every image part replaced by its OCR note."""
        if not any(
            isinstance(m.content, list) and any(p.type in IMAGE_PART_TYPES for p in m.content)
            for m in messages
        ):
            return messages, None
        report = ImageInputReport()
        result: list[ChatMessageParam] = []
        for index, message in enumerate(messages):
            if not isinstance(message.content, list):
                result.append(message)
                continue
            parts: list[TextPart] = []
            for number, part in enumerate(message.content):
                param = f"messages[{index}].content[{number}]"
                if not isinstance(part, ImagePart) or part.type not in IMAGE_PART_TYPES:
                    parts.append(part)  # type: ignore[arg-type]  # kernel_messages checks it
                    continue
                url = part.url()
                if url is None:
                    raise InvalidRequestError("an image part needs image_url.url", param=param)
                image = await asyncio.to_thread(
                    image_from_url, url, allow_fetch=self.fetch_image_urls, param=param
                )
                parts.append(
                    TextPart(type="text", text=await self._note(image, report, tenant, param))
                )
            result.append(message.model_copy(update={"content": parts}))
        return result, report

    async def ollama_messages(
        self, messages: list[ChatMessageBody], tenant: str
    ) -> tuple[list[ChatMessageBody], ImageInputReport | None]:
        if not any(m.images for m in messages):
            return messages, None
        report = ImageInputReport()
        result: list[ChatMessageBody] = []
        for index, message in enumerate(messages):
            if not message.images:
                result.append(message)
                continue
            notes = [
                await self._note(
                    image_from_base64(data, param=f"messages[{index}].images[{n}]"),
                    report,
                    tenant,
                    f"messages[{index}].images[{n}]",
                )
                for n, data in enumerate(message.images)
            ]
            content = "\n\n".join([*notes, message.content or ""]).strip()
            result.append(message.model_copy(update={"content": content, "images": None}))
        return result, report

    async def ollama_prompt(
        self, prompt: str | None, images: list[str], tenant: str
    ) -> tuple[str, ImageInputReport]:
        report = ImageInputReport()
        notes = [
            await self._note(
                image_from_base64(data, param=f"images[{n}]"), report, tenant, f"images[{n}]"
            )
            for n, data in enumerate(images)
        ]
        return "\n\n".join([*notes, prompt or ""]).strip(), report
