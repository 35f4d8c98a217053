"""``POST /v1/ocr``: a multipart ``file`` or JSON ``{"image_url": ...}``, and ``language``."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from llmasos.errors import InvalidRequestError
from llmasos.perception.images import image_from_url
from llmasos.perception.service import PerceptionService
from llmasos.server.context import tenant_for
from llmasos.server.ocr.protocol import OcrForm, OcrJsonRequest, OcrResponse, OcrWordOut
from llmasos.server.ops import is_multipart
from llmasos.server.uploads import read_upload

REQUEST_DOC = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "language": {"type": "string"},
                    },
                }
            },
            "application/json": {"schema": OcrJsonRequest.model_json_schema()},
        },
        "required": True,
    }
}


def ocr_router(perception: PerceptionService, *, fetch_image_urls: bool) -> APIRouter:
    router = APIRouter(tags=["perception"])

    @router.post(
        "/v1/ocr",
        response_model=OcrResponse,
        summary="Read the text of an image",
        openapi_extra=REQUEST_DOC,
    )
    async def read_image(request: Request) -> OcrResponse:
        fields: OcrForm
        if is_multipart(request.scope):
            image, fields = await read_upload(request, OcrForm)
        else:
            try:
                payload = json.loads(await request.body() or b"null")
                body = OcrJsonRequest.model_validate(payload)
            except json.JSONDecodeError:
                raise InvalidRequestError(
                    "send a multipart 'file' or JSON {\"image_url\": ...}", code="invalid_json"
                ) from None
            except ValidationError as error:
                raise RequestValidationError(error.errors()) from None
            image = await asyncio.to_thread(
                image_from_url, body.image_url, allow_fetch=fetch_image_urls, param="image_url"
            )
            fields = body
        result = await perception.read_image(
            image, tenant=tenant_for(fields.user), language=fields.language, model=fields.model
        )
        return OcrResponse(
            text=result.text,
            language=result.language,
            engine=result.engine,
            width=result.width,
            height=result.height,
            confidence=round(result.confidence, 2),
            words=[
                OcrWordOut(
                    text=w.text,
                    box=[w.left, w.top, w.width, w.height],
                    confidence=w.confidence,
                    line=w.line,
                )
                for w in result.words
            ],
        )

    return router
