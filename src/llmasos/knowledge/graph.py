"""The knowledge graph's logic, on an in-memory graph: names, resolution, hops, paths, fusion.

Nothing here touches the database or a model. `Graph` holds a store's entities and its
edges (subject, predicate, object, the chunk that says it); `KnowledgeGraph`
(``graphstore.py``) loads one from the tables and the retrieval benchmark builds one from
extracted triples, so both run the same code. Edges are walked in both directions (a
question "what is connected to X" does not care which side X was on).

- `normalize_name`: the key two mentions of one entity share (Unicode NFKC, case folded,
  whitespace collapsed, quotes and trailing punctuation dropped).
- `resolve_names`: near-duplicate names merged by embedding similarity (`MERGE_SIMILARITY`).
- `Graph.neighbourhood`: the edges within k hops of some entities, nearest first.
- `Graph.shortest_path`: the fewest edges joining two entities, up to N hops.
- `graph_ranking` + `fuse_rankings`: graph mode of search — chunks cited by the edges around
  the hybrid hits' entities, fused with the hybrid order by reciprocal rank fusion.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

MERGE_SIMILARITY: Final = 0.9
"""Two names whose all-MiniLM-L6-v2 embeddings have at least this cosine similarity are one
entity ("Acme Corp" / "Acme Corporation" 0.98); below it they stay apart ("Python 2" /
"Python 3" 0.85; docs/design/knowledge.md). Exact matches after `normalize_name` always
merge."""
MAX_NAME_CHARS: Final = 120
GRAPH_SEED_HITS: Final = 5
"""Graph mode expands from the entities of the best few hybrid hits."""
RRF_K: Final = 60

_SPACES = re.compile(r"\s+")
_ARTICLE = re.compile(r"^(?:the|a|an) (?=\S)")
_EDGE_PUNCTUATION = "\"'`“”‘’«»()[]{}.,;:!?"


def normalize_name(name: str) -> str:
    """The comparison key of an entity name: NFKC, case folded, one space between words,
    surrounding quotes and punctuation and a leading article dropped. Empty when nothing is
    left."""
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _SPACES.sub(" ", text).strip().strip(_EDGE_PUNCTUATION).strip()
    return _ARTICLE.sub("", text)[:MAX_NAME_CHARS]


def clean_name(name: str) -> str:
    """A name as shown: whitespace collapsed, surrounding punctuation dropped, case kept."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", name)).strip()
    return text.strip(_EDGE_PUNCTUATION).strip()[:MAX_NAME_CHARS]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def resolve_names(
    known: Mapping[str, Sequence[float] | None],
    new: Mapping[str, Sequence[float] | None],
    threshold: float = MERGE_SIMILARITY,
) -> dict[str, str]:
    """Map each normalized name of ``new`` to the normalized name it merges into.

    A name already in ``known`` is itself. Otherwise the most similar known name (or earlier
    new name) at or above ``threshold`` is taken; with none, the name stands alone (a new
    entity). Names without an embedding merge only by exact key."""
    pool: dict[str, Sequence[float] | None] = dict(known)
    result: dict[str, str] = {}
    for name, vector in new.items():
        if name in pool:
            result[name] = name
            continue
        best, best_score = name, threshold
        if vector is not None:
            for other, other_vector in pool.items():
                if other_vector is None:
                    continue
                score = cosine(vector, other_vector)
                if score >= best_score:
                    best, best_score = other, score
        result[name] = best
        if best == name:
            pool[name] = vector
    # a chain a -> b where b itself merged elsewhere cannot happen: merges point into `pool`,
    # whose names map to themselves
    return result


@dataclass(frozen=True)
class Entity:
    id: int
    name: str
    type: str
    mentions: int = 0


@dataclass(frozen=True)
class Edge:
    """One triple: ``subject`` —``predicate``→ ``object``, said by chunk ``chunk_id``."""

    id: int
    subject: int
    predicate: str
    object: int
    chunk_id: int

    def other(self, entity: int) -> int:
        return self.object if entity == self.subject else self.subject


@dataclass
class Graph:
    """Entities and edges of one store (or one benchmark corpus)."""

    entities: dict[int, Entity] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    adjacency: dict[int, list[Edge]] = field(default_factory=dict)
    by_chunk: dict[int, set[int]] = field(default_factory=dict)
    """Chunk id -> the entities its triples name."""

    @classmethod
    def of(cls, entities: Iterable[Entity], edges: Iterable[Edge]) -> Graph:
        graph = cls(entities={e.id: e for e in entities})
        for edge in edges:
            if edge.subject not in graph.entities or edge.object not in graph.entities:
                continue
            graph.edges.append(edge)
            graph.adjacency.setdefault(edge.subject, []).append(edge)
            if edge.object != edge.subject:
                graph.adjacency.setdefault(edge.object, []).append(edge)
            graph.by_chunk.setdefault(edge.chunk_id, set()).update((edge.subject, edge.object))
        return graph

    def connected(self) -> list[Entity]:
        """Entities with at least one edge (the others are leftovers of dropped chunks)."""
        return [e for i, e in self.entities.items() if self.adjacency.get(i)]

    def neighbourhood(
        self, seeds: Iterable[int], hops: int = 1, limit: int = 50
    ) -> list[tuple[int, Edge]]:
        """Edges within ``hops`` of ``seeds`` as (hop, edge), nearest first (breadth first),
        at most ``limit``. Hop 1 is an edge touching a seed."""
        frontier = [s for s in dict.fromkeys(seeds) if s in self.entities]
        seen_entities = set(frontier)
        seen_edges: set[int] = set()
        found: list[tuple[int, Edge]] = []
        for hop in range(1, max(1, hops) + 1):
            following: list[int] = []
            for entity in frontier:
                for edge in self.adjacency.get(entity, []):
                    if edge.id in seen_edges:
                        continue
                    seen_edges.add(edge.id)
                    found.append((hop, edge))
                    if len(found) >= limit:
                        return found
                    other = edge.other(entity)
                    if other not in seen_entities:
                        seen_entities.add(other)
                        following.append(other)
            frontier = following
            if not frontier:
                break
        return found

    def shortest_path(self, start: int, goal: int, max_hops: int = 4) -> list[Edge] | None:
        """The fewest edges joining ``start`` and ``goal`` (either direction), at most
        ``max_hops``; None when there is none that short. Ties: the edges met first."""
        if start not in self.entities or goal not in self.entities:
            return None
        if start == goal:
            return []
        came_from: dict[int, tuple[int, Edge]] = {}
        queue: deque[tuple[int, int]] = deque([(start, 0)])
        seen = {start}
        while queue:
            entity, depth = queue.popleft()
            if depth >= max_hops:
                continue
            for edge in self.adjacency.get(entity, []):
                other = edge.other(entity)
                if other in seen:
                    continue
                seen.add(other)
                came_from[other] = (entity, edge)
                if other == goal:
                    path: list[Edge] = []
                    node = goal
                    while node != start:
                        node, step = came_from[node]
                        path.append(step)
                    return path[::-1]
                queue.append((other, depth + 1))
        return None


def graph_ranking(
    graph: Graph, hit_chunks: Sequence[int], seed_hits: int = GRAPH_SEED_HITS
) -> list[int]:
    """Chunks reached from the best ``seed_hits`` chunks of a ranking along one edge: the
    entities those chunks name, then every edge touching one of them; a chunk cited by such
    an edge scores one per edge (ties: the edge of the better seed first). The seeds'
    own chunks are included (their edges touch the seeds)."""
    scores: dict[int, float] = {}
    for rank, chunk in enumerate(hit_chunks[:seed_hits]):
        weight = 1.0 / (rank + 1)
        for entity in sorted(graph.by_chunk.get(chunk, ())):
            for edge in graph.adjacency.get(entity, []):
                scores[edge.chunk_id] = scores.get(edge.chunk_id, 0.0) + weight
    return [chunk for chunk, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def fuse_rankings(
    hybrid: Sequence[int], graph: Sequence[int], graph_weight: float = 1.0
) -> list[int]:
    """Reciprocal rank fusion of the hybrid order and the graph order (graph weighted)."""
    scores: dict[int, float] = {}
    for rank, ref in enumerate(hybrid, start=1):
        scores[ref] = scores.get(ref, 0.0) + 1.0 / (RRF_K + rank)
    for rank, ref in enumerate(graph, start=1):
        scores[ref] = scores.get(ref, 0.0) + graph_weight / (RRF_K + rank)
    first = {ref: i for i, ref in enumerate([*hybrid, *graph])}
    return sorted(scores, key=lambda ref: (-scores[ref], first.get(ref, 0)))
