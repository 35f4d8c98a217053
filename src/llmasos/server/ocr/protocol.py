"""Request and response models of ``POST /v1/ocr``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmasos.server.openai.common import OpenAIModel


class OcrForm(OpenAIModel):
    """The fields beside a multipart ``file``."""

    language: str | None = Field(
        None, description="tesseract languages (eng, chi_sim, eng+chi_sim) or en / zh."
    )
    model: str | None = Field(None, description="The OCR engine (default: tesseract).")
    user: str | None = None


class OcrJsonRequest(OcrForm):
    image_url: str = Field(..., description="A data: URL, or http(s) where the server allows.")


class OcrWordOut(OpenAIModel):
    text: str
    box: list[int] = Field(..., description="[left, top, width, height] in pixels.")
    confidence: float = Field(..., description="0 to 100.")
    line: int


class OcrResponse(OpenAIModel):
    object: Literal["ocr.result"] = "ocr.result"
    text: str
    language: str
    engine: str
    width: int
    height: int
    confidence: float = Field(..., description="Mean word confidence, 0 to 100.")
    words: list[OcrWordOut]
