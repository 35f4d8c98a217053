"""Request models of ``POST /api/embed`` and the legacy ``POST /api/embeddings``."""

from __future__ import annotations

from pydantic import Field

from llmasos.server.ollama.common import OllamaModel, Options


class EmbedBody(OllamaModel):
    model: str = Field(..., min_length=1)
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)
    options: Options | None = None
    keep_alive: float | str | None = None


class LegacyEmbeddingsBody(OllamaModel):
    model: str = Field(..., min_length=1)
    prompt: str = ""
    options: Options | None = None
    keep_alive: float | str | None = None
