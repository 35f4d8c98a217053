"""Exception handlers: every failure becomes an error body in the caller's dialect.

Under ``/api`` (Ollama) the body is ``{"error": "<message>"}``; everywhere else it is
OpenAI's ``{"error": {"message", "type", "param", "code"}}``. `LLMasOSError` keeps its
status and adds ``Retry-After`` when it has one; request validation failures (bad JSON,
wrong types, missing fields) are 400 naming the parameter; unknown routes are 404; only a
real bug is a 500, and it is logged with its traceback.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from llmasos.errors import InvalidRequestError, LLMasOSError, NotFoundError

logger = logging.getLogger(__name__)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def is_ollama_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def error_response(
    path: str,
    status: int,
    message: str,
    *,
    error_type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    retry_after: float | None = None,
) -> JSONResponse:
    """An error body in the dialect of the route at ``path``."""
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    body: dict[str, Any]
    if is_ollama_path(path):
        body = {"error": message}
    else:
        body = {
            "error": {
                "message": message,
                "type": error_type or _STATUS_TYPES.get(status, "server_error"),
                "param": param,
                "code": code,
            }
        }
    return JSONResponse(body, status_code=status, headers=headers)


def llmasos_error_response(path: str, error: LLMasOSError) -> JSONResponse:
    body = error.to_openai()["error"]
    assert isinstance(body, dict)
    return error_response(
        path,
        error.status_code,
        error.message,
        error_type=str(body["type"]),
        param=error.param,
        code=error.code,
        retry_after=error.retry_after,
    )


def validation_error(error: RequestValidationError) -> InvalidRequestError:
    """The first problem of a pydantic validation failure, as a 400 naming its parameter."""
    problems = list(error.errors())
    if not problems:
        return InvalidRequestError("invalid request body")
    first = problems[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "") if isinstance(first.get("ctx"), dict) else ""
        message = f"request body is not valid JSON{': ' + detail if detail else ''}"
        return InvalidRequestError(message, code="invalid_json")
    param = ".".join(location) or None
    message = str(first.get("msg", "invalid value"))
    if param:
        message = f"{param}: {message}"
    return InvalidRequestError(message, param=param)


def install_exception_handlers(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    async def on_llmasos_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, LLMasOSError)
        if error.status_code >= 500:
            logger.warning("%s %s failed: %s", request.method, request.url.path, error)
        return llmasos_error_response(request.url.path, error)

    async def on_validation_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return llmasos_error_response(request.url.path, validation_error(error))

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 404:
            wrapped: LLMasOSError = NotFoundError(f"no route for {request.url.path}")
            return llmasos_error_response(request.url.path, wrapped)
        return error_response(request.url.path, error.status_code, str(error.detail))

    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error in %s %s", request.method, request.url.path)
        return error_response(
            request.url.path, 500, f"internal error: {type(error).__name__}", code="internal"
        )

    app.add_exception_handler(LLMasOSError, on_llmasos_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
