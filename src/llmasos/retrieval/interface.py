"""What a retrieval index is: add, remove and search texts, by words and by meaning.

A *collection* (``memory``, later ``knowledge``) owns its entries; each entry points back to
one row of the collection's own table (``ref_id``) and lives in one *namespace* (the search
scope, e.g. one user's memories). `RetrievalIndexInterface.search` ranks a namespace's
entries by BM25 over their words, by cosine similarity of their embeddings, or by both fused
with reciprocal rank fusion, after the `SearchFilters` (time, kind, metadata) cut them down.
Embeddings are computed by the caller (through the kernel's embed syscall) so the index
never loads a model. Implementations: `llmasos.retrieval.hybrid.HybridIndex`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from llmasos.errors import InvalidRequestError

RetrievalMode = Literal["hybrid", "bm25", "vector"]
RRF_K = 60
"""The constant of reciprocal rank fusion (Cormack et al. 2009): score = Σ 1 / (k + rank)."""
MetadataValue = str | int | float | bool
METADATA_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class IndexEntry:
    """One text to index. ``text`` is only read to derive its index terms, never stored."""

    ref_id: int
    namespace: str
    text: str
    embedding: Sequence[float] | None
    created_at: datetime
    user_id: int | None = None
    """Deleting this user deletes the entry (foreign-key cascade)."""
    kind: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchFilters:
    """Conditions every result must meet; empty means none."""

    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    """Metadata key -> value that must be equal (top-level keys)."""
    ranges: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    """Metadata key -> (lowest, highest) numeric value, both inclusive; None is unbounded."""
    metadata_in: Mapping[str, frozenset[MetadataValue]] = field(default_factory=dict)
    """Metadata key -> the values it may have (e.g. the files a knowledge search allows)."""

    def __post_init__(self) -> None:
        check_metadata_filters(self.metadata)
        check_metadata_filters({key: 0 for key in self.ranges}, "ranges")
        for key, values in self.metadata_in.items():
            for value in values:
                check_metadata_filters({key: value}, "filters")

    @property
    def empty(self) -> bool:
        return (
            self.kind is None
            and self.since is None
            and self.until is None
            and not self.metadata
            and not self.ranges
            and not self.metadata_in
        )


@dataclass(frozen=True)
class SearchHit:
    """One result: the owning row's id and how it ranked."""

    ref_id: int
    score: float
    """The fused score (hybrid), -BM25 (bm25, higher is better), or cosine (vector)."""
    bm25_rank: int | None = None
    """1-based rank among the word matches; None when the words did not match."""
    vector_rank: int | None = None
    similarity: float | None = None
    """Cosine similarity of the query and entry embeddings, when both exist."""


def check_metadata_filters(filters: Mapping[str, Any], where: str = "filters") -> None:
    """Raise a 400 naming the field unless every key is a name and every value a scalar."""
    if not isinstance(filters, Mapping):
        raise InvalidRequestError(f"{where}: must be an object of key -> value", param=where)
    for key, value in filters.items():
        if not isinstance(key, str) or not METADATA_KEY.fullmatch(key):
            raise InvalidRequestError(
                f"{where}: key {str(key)[:80]!r} is not a metadata key (1-64 letters, digits, "
                "'_', '.' or '-')",
                param=where,
            )
        if not isinstance(value, str | int | float | bool) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidRequestError(
                f"{where}.{key}: must be a string, number or boolean, not {type(value).__name__}",
                param=f"{where}.{key}",
            )


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """Fuse ranked id lists: ids by Σ 1/(k + rank), best first (ties keep first-seen order)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, ref_id in enumerate(ranking, start=1):
            scores[ref_id] = scores.get(ref_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


class RetrievalIndexInterface(ABC):
    """A hybrid index over one collection. Writes join the caller's transaction."""

    collection: str

    @abstractmethod
    def add(self, session: Any, entries: Sequence[IndexEntry]) -> None:
        """Index entries inside the caller's write session (same transaction as its rows)."""

    @abstractmethod
    def update(self, session: Any, entry: IndexEntry) -> None:
        """Replace the text, embedding and metadata of the entry for ``entry.ref_id``."""

    @abstractmethod
    def remove(self, session: Any, ref_ids: Sequence[int]) -> None:
        """Remove the entries of these rows (unknown ids are ignored)."""

    @abstractmethod
    def remove_namespace(self, session: Any, namespace: str) -> int:
        """Remove every entry of a namespace; return how many."""

    @abstractmethod
    def search(
        self,
        namespace: str,
        query: str,
        embedding: Sequence[float] | None,
        *,
        k: int = 10,
        filters: SearchFilters | None = None,
        mode: RetrievalMode = "hybrid",
    ) -> list[SearchHit]:
        """The ``k`` best entries of ``namespace`` for ``query``, best first."""
