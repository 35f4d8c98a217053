"""Request bodies of ``/v1/vector_stores`` (responses are the knowledge base's OpenAI dicts)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmasos.server.openai.common import OpenAIModel


class VectorStoreCreateRequest(OpenAIModel):
    name: str = Field("", description="A name (also how `llmasos kb` finds the store).")
    file_ids: list[str] = Field(default_factory=list, description="Files to add at once.")
    metadata: dict[str, Any] | None = Field(None, description="Up to 16 string pairs.")
    chunking_strategy: dict[str, Any] | None = Field(
        None,
        description='{"type": "static", "static": {"max_chunk_size_tokens": N, '
        '"chunk_overlap_tokens": M}} or {"type": "auto"} (250 / 50).',
    )
    expires_after: dict[str, Any] | None = Field(
        None, description="Accepted and ignored: stores do not expire."
    )


class VectorStoreUpdateRequest(OpenAIModel):
    name: str | None = None
    metadata: dict[str, Any] | None = None
    expires_after: dict[str, Any] | None = Field(None, description="Accepted and ignored.")


class VectorStoreFileCreateRequest(OpenAIModel):
    file_id: str = Field(..., description="A file you uploaded; adding it again re-indexes it.")
    attributes: dict[str, Any] | None = Field(
        None, description="Up to 16 key -> string/number/boolean pairs for search filters."
    )
    chunking_strategy: dict[str, Any] | None = None


class BatchFile(OpenAIModel):
    file_id: str
    attributes: dict[str, Any] | None = None
    chunking_strategy: dict[str, Any] | None = None


class FileBatchCreateRequest(OpenAIModel):
    file_ids: list[str] | None = Field(
        None, description="Files you uploaded (1 to 500), with the batch's attributes."
    )
    files: list[BatchFile] | None = Field(
        None, description="Or each file with its own attributes and chunking_strategy."
    )
    attributes: dict[str, Any] | None = Field(
        None, description="Attributes for every file of file_ids (search filters read them)."
    )
    chunking_strategy: dict[str, Any] | None = None


class VectorStoreFileUpdateRequest(OpenAIModel):
    attributes: dict[str, Any] = Field(..., description="Replaces the attributes.")


class RankingOptions(OpenAIModel):
    ranker: str = Field(
        "auto", description="auto / default-2024-11-15 (hybrid), or hybrid, bm25, vector."
    )
    score_threshold: float = Field(0.0, ge=0.0, le=1.0, description="Minimum score (cosine).")
    graph: bool = Field(
        False,
        description="An addition: expand from the hits' entities along the store's knowledge "
        "graph and fuse the chunks its edges cite with the ranking.",
    )


class VectorStoreSearchRequest(OpenAIModel):
    query: str | list[str] = Field(..., description="Text, or a list joined with spaces.")
    max_num_results: int = Field(10, description="1 to 50.")
    filters: dict[str, Any] | None = Field(
        None, description="OpenAI's comparison / compound filter on file attributes."
    )
    ranking_options: RankingOptions | None = None
    rewrite_query: bool = Field(False, description="Accepted and ignored.")


class ChunkUpdateRequest(OpenAIModel):
    text: str | None = Field(None, description="New text: re-embedded and re-indexed at once.")
    disabled: bool | None = Field(None, description="True takes it out of search; false back.")


class GraphQueryRequest(OpenAIModel):
    query: str = Field(
        ..., description='A question: "what is connected to X", "how is X related to Y".'
    )
    mode: str = Field(
        "auto", description="auto (path when two entities are named), neighbourhood, path."
    )
    hops: int = Field(1, description="Neighbourhood depth, 1 to 4.")
    max_hops: int = Field(4, description="Longest path looked for, 1 to 4.")
    limit: int = Field(20, description="Most edges in a neighbourhood answer, 1 to 50.")
