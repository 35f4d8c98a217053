"""Request and response models of ``POST /v1/embeddings``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmasos.server.openai.common import OpenAIModel


class EmbeddingRequest(OpenAIModel):
    model: str | None = Field(None, description="Embedding model; omitted means the default.")
    input: str | list[str] = Field(..., description="A text or a list of texts.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Truncate (and renormalize) vectors.")
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
