"""LLMasOS: a self-hosted operating system whose kernel is an LLM runtime.

``import llmasos`` stays light: heavy backends (torch, transformers) load lazily, on first use,
and the SDK names (`Client`, `AsyncClient`, `LLM`, `pipeline`) and `Application` import on
first access.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("llmasos")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from llmasos.apps import Application
    from llmasos.sdk import LLM, AsyncClient, Client, pipeline

_SDK_NAMES = ("LLM", "AsyncClient", "Client", "pipeline")
__all__ = ["LLM", "Application", "AsyncClient", "Client", "__version__", "pipeline"]


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        import llmasos.sdk

        return getattr(llmasos.sdk, name)
    if name == "Application":
        from llmasos.apps import Application

        return Application
    raise AttributeError(f"module 'llmasos' has no attribute {name!r}")
