"""The shared retrieval index: BM25 over words plus vector similarity, fused (RRF).

Memory (``llmasos.memory``) and knowledge bases share it: each is a *collection* of entries
in one table, searched per *namespace*. The contract is `llmasos.retrieval.interface`;
`HybridIndex` implements it over the storage layer. This package may import the kernel
client, storage, config, errors and types — nothing above them.
"""

from llmasos.retrieval.interface import (
    IndexEntry,
    RetrievalIndexInterface,
    RetrievalMode,
    SearchFilters,
    SearchHit,
    check_metadata_filters,
    reciprocal_rank_fusion,
)

__all__ = [
    "IndexEntry",
    "RetrievalIndexInterface",
    "RetrievalMode",
    "SearchFilters",
    "SearchHit",
    "check_metadata_filters",
    "reciprocal_rank_fusion",
]
