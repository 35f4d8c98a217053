"""Reading multipart uploads (``/v1/audio/transcriptions``, ``/v1/ocr``): the file's bytes
and the other fields checked against a Pydantic model, with OpenAI-shaped 400s for a
missing file or a bad field. The body-size limit (413) applies before any of this."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from llmasos.errors import BackendUnavailableError, InvalidRequestError

FormModel = TypeVar("FormModel", bound=BaseModel)


async def read_upload(request: Request, model: type[FormModel]) -> tuple[bytes, FormModel]:
    """``(file bytes, fields)`` of a multipart request whose file part is ``file``."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidRequestError(
            "send the file as multipart/form-data with a 'file' part", param="file"
        )
    try:
        form = await request.form(max_files=1, max_fields=50)
    except AssertionError:  # starlette's way of saying python-multipart is missing
        raise BackendUnavailableError(
            "file uploads need python-multipart: pip install 'llmasos[perception]'"
        ) from None
    except Exception as error:  # a malformed multipart body
        raise InvalidRequestError(f"the multipart body cannot be read: {error}") from None
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequestError("the request has no 'file' part", param="file")
        data = await upload.read()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key == "file" or not isinstance(value, str):
                continue
            name = key.removesuffix("[]")
            if key.endswith("[]"):
                fields.setdefault(name, []).append(value)
            else:
                fields[name] = value
    finally:
        await form.close()  # the spooled temporary files
    try:
        return data, model.model_validate(fields)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None
