"""The error hierarchy shared by every layer.

Each error carries what a face needs to report it: an HTTP status, an OpenAI error ``type``
and optional ``code``/``param``. The CLI prints ``str(error)`` as one line; the server turns
an error into OpenAI's ``{"error": {...}}`` shape. Nothing here imports another subsystem.
"""

from __future__ import annotations


class LLMasOSError(Exception):
    """Base class: a failure with a message meant for the person who caused it."""

    status_code: int = 500
    error_type: str = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after

    def to_openai(self) -> dict[str, object]:
        """The body OpenAI's API returns for this error."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(LLMasOSError):
    """The caller asked for something malformed or impossible (HTTP 400)."""

    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceededError(InvalidRequestError):
    """A prompt plus the tokens asked for does not fit the model's context window."""

    default_code = "context_length_exceeded"


class ModelNotFoundError(LLMasOSError):
    """No model of that name is in the store (HTTP 404)."""

    status_code = 404
    error_type = "invalid_request_error"
    default_code = "model_not_found"


class NotFoundError(LLMasOSError):
    """Some other named object does not exist (HTTP 404)."""

    status_code = 404
    error_type = "not_found_error"


class PayloadTooLargeError(InvalidRequestError):
    """One piece of a request is bigger than the limit for it (HTTP 413)."""

    status_code = 413
    default_code = "payload_too_large"


class ModelFormatError(InvalidRequestError):
    """A file or directory is not a model we can read (corrupt, truncated, wrong kind)."""

    default_code = "invalid_model"


class ModelfileError(InvalidRequestError):
    """A Modelfile could not be parsed or refers to something missing."""

    default_code = "invalid_modelfile"


class StorageError(LLMasOSError):
    """The disk refused a write (unwritable home, full disk); nothing was changed."""

    status_code = 507
    error_type = "server_error"
    default_code = "storage_error"


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached right now (server down, connection lost); retry
    later (HTTP 503). The unit of work it interrupted was rolled back."""

    status_code = 503
    default_code = "database_unavailable"


class DownloadError(LLMasOSError):
    """A download from a model hub failed (offline, not found, digest mismatch)."""

    status_code = 502
    error_type = "server_error"
    default_code = "download_failed"


class ConfigError(LLMasOSError):
    """A setting has an invalid value."""

    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_config"


class BackendError(LLMasOSError):
    """An inference backend failed to load or to run a model."""

    default_code = "backend_error"


class BackendUnavailableError(BackendError):
    """The backend's optional dependency is not installed."""

    default_code = "backend_unavailable"


class UnsupportedError(InvalidRequestError):
    """The model or backend cannot do what was asked (e.g. embeddings from a chat model)."""

    default_code = "unsupported"


class QueueFullError(LLMasOSError):
    """The kernel's queue is full; the caller should retry later (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    default_code = "queue_full"


class ClusterError(LLMasOSError):
    """The cluster cannot do what was asked: no cluster at an address, Ray missing, no live
    replica of a model, no node that fits one (HTTP 503)."""

    status_code = 503
    error_type = "server_error"
    default_code = "cluster_unavailable"


class RemoteProviderError(LLMasOSError):
    """A remote provider (an OpenAI-compatible endpoint registered with ``llmasos remote
    add``) failed: refused the key, could not be reached, or answered something malformed
    (HTTP 502, the message names the remote)."""

    status_code = 502
    error_type = "server_error"
    default_code = "remote_provider_error"


class RequestTimeoutError(LLMasOSError):
    """A request ran past its deadline (HTTP 504)."""

    status_code = 504
    error_type = "server_error"
    default_code = "timeout"


class RateLimitError(LLMasOSError):
    """A quota or rate limit was exceeded (HTTP 429)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class AuthenticationError(LLMasOSError):
    """Missing or invalid credentials (HTTP 401)."""

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(LLMasOSError):
    """Valid credentials without the right to do this (HTTP 403)."""

    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"
