"""LLMasOS: a self-hosted operating system whose kernel is an LLM runtime.

The public names a program uses are here: the SDK (`Client`, `AsyncClient`, `LLM`,
`pipeline`, `Application`, `Workflow`) and the errors every layer raises (`LLMasOSError` and its
subclasses, also in `llmasos.errors`). User programs (the built-in apps, the app templates)
import only these names, like any third-party app.

``import llmasos`` stays light: heavy backends (torch, transformers) load lazily, on first use,
and the SDK names import on first access.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("llmasos")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from llmasos.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
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

if TYPE_CHECKING:
    from llmasos.sdk import LLM, Application, AsyncClient, Client, Workflow, pipeline

_SDK_NAMES = ("LLM", "Application", "AsyncClient", "Client", "Workflow", "pipeline")
__all__ = [
    "LLM",
    "Application",
    "AsyncClient",
    "AuthenticationError",
    "BackendError",
    "Client",
    "ConfigError",
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
    "Workflow",
    "__version__",
    "pipeline",
]


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        import llmasos.sdk

        return getattr(llmasos.sdk, name)
    raise AttributeError(f"module 'llmasos' has no attribute {name!r}")
