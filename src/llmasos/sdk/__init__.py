"""The Python SDK: the same API over HTTP (`Client`, `AsyncClient`) or in-process (`LLM`).

``llmasos.Client``, ``llmasos.AsyncClient``, ``llmasos.LLM`` and ``llmasos.pipeline`` are
these, imported lazily. The application framework (``Application``) builds on `LLM`.
"""

from llmasos.sdk.client import AsyncClient, Client
from llmasos.sdk.llm import LLM
from llmasos.sdk.pipeline import pipeline

__all__ = ["LLM", "AsyncClient", "Client", "pipeline"]
