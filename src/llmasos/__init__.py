"""LLMasOS: a self-hosted operating system whose kernel is an LLM runtime.

``import llmasos`` stays light: heavy backends (torch, transformers) load lazily, on first use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("llmasos")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
