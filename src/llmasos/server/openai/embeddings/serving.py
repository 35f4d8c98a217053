"""Embeddings: texts to the kernel's embed call; vectors as floats or base64 float32 (LE)."""

from __future__ import annotations

import base64
import math

import numpy as np

from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.server.context import report_usage
from llmasos.server.openai.embeddings.protocol import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)


def truncate_vector(vector: list[float], dimensions: int | None) -> list[float]:
    """The first ``dimensions`` values, renormalized to unit length (Matryoshka style)."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def texts_of(value: str | list[str], param: str = "input") -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise InvalidRequestError(f"{param} must not be empty", param=param)
    return texts


class EmbeddingService:
    def __init__(self, engine: EngineClientInterface) -> None:
        self.engine = engine

    async def embed(self, body: EmbeddingRequest) -> EmbeddingResponse:
        result = await self.engine.embed(body.model, texts_of(body.input))
        data = []
        for index, vector in enumerate(result.vectors):
            values = truncate_vector(vector, body.dimensions)
            encoded: list[float] | str = (
                encode_base64(values) if body.encoding_format == "base64" else values
            )
            data.append(Embedding(index=index, embedding=encoded))
        report_usage(result.model, result.prompt_tokens, 0)
        usage = EmbeddingUsage(
            prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens
        )
        return EmbeddingResponse(data=data, model=result.model, usage=usage)
