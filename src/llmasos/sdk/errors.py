"""Errors the SDK raises: the same `llmasos.errors` classes the server raised.

A server error body (OpenAI's ``{"error": {"message", "type", "param", "code"}}`` or
Ollama's ``{"error": "..."}``) becomes the `LLMasOSError` subclass matching its status and
code, carrying the server's message, so ``except llmasos.errors.ModelNotFoundError`` works
the same against a server and in-process. `APIConnectionError` means no server answered.
"""

from __future__ import annotations

from typing import Any

from llmasos.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    InvalidRequestError,
    LLMasOSError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    QueueFullError,
    RateLimitError,
    RequestTimeoutError,
    UnsupportedError,
)

__all__ = [
    "APIConnectionError",
    "AuthenticationError",
    "ContextLengthExceededError",
    "InvalidRequestError",
    "LLMasOSError",
    "ModelNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "QueueFullError",
    "RateLimitError",
    "RequestTimeoutError",
    "UnsupportedError",
    "error_from_response",
]


class APIConnectionError(LLMasOSError):
    """No LLMasOS server answered at the client's base URL."""

    status_code = 503
    error_type = "server_error"
    default_code = "connection_error"


_BY_CODE: dict[str, type[LLMasOSError]] = {
    "model_not_found": ModelNotFoundError,
    "context_length_exceeded": ContextLengthExceededError,
    "unsupported": UnsupportedError,
    "queue_full": QueueFullError,
    "timeout": RequestTimeoutError,
}
_BY_STATUS: dict[int, type[LLMasOSError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitError,
    503: QueueFullError,
    504: RequestTimeoutError,
}


def error_from_body(status: int, body: Any, retry_after: float | None = None) -> LLMasOSError:
    """The typed error for a server's error body (already parsed JSON, or text)."""
    message, param, code = str(body), None, None
    if isinstance(body, dict) and "error" in body:
        detail = body["error"]
        if isinstance(detail, dict):
            message = str(detail.get("message", detail))
            param = detail.get("param")
            code = detail.get("code")
        else:
            message = str(detail)
    cls = _BY_CODE.get(str(code)) or _BY_STATUS.get(status, LLMasOSError)
    error = cls(message, param=param, code=code, retry_after=retry_after)
    if cls is LLMasOSError:
        error.status_code = status
    return error


def error_from_response(status: int, content: bytes, headers: Any = None) -> LLMasOSError:
    """The typed error for an HTTP error response."""
    import json

    try:
        body: Any = json.loads(content)
    except ValueError:
        body = content.decode("utf-8", "replace") or f"HTTP {status}"
    retry = headers.get("retry-after") if headers is not None else None
    try:
        retry_after = float(retry) if retry else None
    except ValueError:
        retry_after = None
    return error_from_body(status, body, retry_after)
