"""Conversation turns in the shared hybrid index: recall after compaction, and topics.

Every message, tool call and tool result of a stored conversation can be indexed in the
shared index (`llmasos.retrieval`, collection ``conversation``), one namespace per owner
(the same key memory uses), with its conversation, position and role as metadata, so that:

* compaction recall (`ConversationIndex.recaller`, which `fit_context` calls) ranks a
  conversation's compacted turns by BM25 and by meaning, fused — a question that paraphrases
  what was said long ago ("what do I do for a living?" for "I work as a nurse") finds it,
  where words alone would not;
* personalization (`ConversationIndex.closest_turn`) can tell what a user talks about.

Indexing is idempotent and lazy: `index` adds the items not yet indexed, with one embed
call for all of them. The server indexes each stored turn in the background after replying
(so the reply does not wait for it), and `recall` indexes any compacted turn still missing
before it searches, so a turn compacted before its background indexing ran is still found.
An item's text goes into the index only as blinded terms and an embedding; the text itself
stays sealed in its item. Deleting an item or a conversation removes its entries
(`llmasos.memory.conversations.forget_indexed`).

The embedding model reads a bounded number of tokens: a long turn is embedded from its
beginning (BM25 still sees every word of it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select

from llmasos.config import Settings
from llmasos.errors import ContextLengthExceededError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.memory.compaction import Recaller
from llmasos.memory.conversations import SEARCH_COLLECTION, StoredItem
from llmasos.memory.items import item_text
from llmasos.memory.memories import MemoryOwner
from llmasos.retrieval.hybrid import HybridIndex
from llmasos.retrieval.interface import IndexEntry, SearchFilters
from llmasos.retrieval.terms import TermBlinder
from llmasos.storage.crypto import load_master_key
from llmasos.storage.database import Database
from llmasos.storage.schema import ConversationItem, ConversationSearchRef

logger = logging.getLogger(__name__)

EMBED_CHARS = 1000
"""A turn's embedding reads at most its first this many characters (halved again if the
embedding model still finds them too long)."""
MIN_RECALL_SIMILARITY = 0.3
"""A turn found only by meaning (no shared word) is recalled when its cosine similarity to
the query reaches this: below it, paraphrase matches are mostly noise on MiniLM."""


def indexable(item: StoredItem) -> bool:
    return not item.is_summary and bool(item_text(item.body).strip())


class ConversationIndex:
    """The conversation collection of the shared index, for one database."""

    def __init__(
        self,
        database: Database,
        engine: EngineClientInterface,
        blinder: TermBlinder,
        *,
        embedding_model: str | None = None,
    ) -> None:
        self.database = database
        self.engine = engine
        self.embedding_model = embedding_model
        self.index = HybridIndex(database, SEARCH_COLLECTION, blinder)

    @classmethod
    def open(
        cls, settings: Settings, database: Database, engine: EngineClientInterface
    ) -> ConversationIndex:
        return cls(
            database,
            engine,
            TermBlinder(load_master_key(settings)),
            embedding_model=settings.default_embedding_model,
        )

    # --- writes ----------------------------------------------------------------------------

    async def index_items(
        self, owner: int | None, conversation_id: str, items: Sequence[StoredItem]
    ) -> int:
        """Index the items of ``conversation_id`` not indexed yet; how many were added."""
        wanted = [item for item in items if indexable(item)]
        if not wanted:
            return 0
        known = await asyncio.to_thread(self._indexed, [item.id for item in wanted])
        missing = [item for item in wanted if item.id not in known]
        if not missing:
            return 0
        vectors = await self.embed([item_text(item.body) for item in missing])
        return await asyncio.to_thread(self._write, owner, conversation_id, missing, vectors)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embeddings of the texts' beginnings (see `EMBED_CHARS`)."""
        heads = [text[:EMBED_CHARS] for text in texts]
        try:
            return (await self.engine.embed(self.embedding_model, heads)).vectors
        except ContextLengthExceededError:
            return [await self._embed_one(head) for head in heads]

    async def _embed_one(self, text: str) -> list[float]:
        while True:
            try:
                return (await self.engine.embed(self.embedding_model, [text])).vectors[0]
            except ContextLengthExceededError:
                if len(text) < 16:
                    raise
                text = text[: len(text) // 2]

    def _indexed(self, item_ids: list[str]) -> set[str]:
        with self.database.session() as session:
            return set(
                session.scalars(
                    select(ConversationSearchRef.item_id).where(
                        ConversationSearchRef.item_id.in_(item_ids)
                    )
                )
            )

    def _write(
        self,
        owner: int | None,
        conversation_id: str,
        items: list[StoredItem],
        vectors: list[list[float]],
    ) -> int:
        namespace = MemoryOwner.for_user(owner).key
        with self.database.session(write=True) as session:
            present = set(
                session.scalars(
                    select(ConversationItem.id).where(
                        ConversationItem.id.in_([item.id for item in items])
                    )
                )
            )
            done = set(
                session.scalars(
                    select(ConversationSearchRef.item_id).where(
                        ConversationSearchRef.item_id.in_(list(present))
                    )
                )
            )
            # Deleted meanwhile, or indexed by a concurrent call: skip.
            pairs = [
                (item, vector)
                for item, vector in zip(items, vectors, strict=True)
                if item.id in present and item.id not in done
            ]
            refs = [
                ConversationSearchRef(
                    item_id=item.id, conversation_id=conversation_id, user_id=owner
                )
                for item, _ in pairs
            ]
            session.add_all(refs)
            session.flush()
            self.index.add(
                session,
                [
                    IndexEntry(
                        ref_id=ref.id,
                        namespace=namespace,
                        text=item_text(item.body),
                        embedding=vector,
                        created_at=item.created_at or datetime.now(UTC),
                        user_id=owner,
                        kind=str(item.body.get("role") or item.type),
                        metadata={"conversation": conversation_id, "position": item.position},
                    )
                    for ref, (item, vector) in zip(refs, pairs, strict=True)
                ],
            )
            return len(refs)

    # --- recall ----------------------------------------------------------------------------

    async def recall(
        self,
        owner: int | None,
        conversation_id: str,
        query: str,
        compacted: list[StoredItem],
        limit: int,
        *,
        query_vector: Sequence[float] | None = None,
    ) -> list[StoredItem]:
        """The compacted turns most relevant to ``query``, in conversation order."""
        turns = [item for item in compacted if indexable(item)]
        if not query.strip() or not turns or limit <= 0:
            return []
        await self.index_items(owner, conversation_id, turns)
        if query_vector is None:
            query_vector = (await self.embed([query]))[0]
        last = max(item.position for item in turns)
        filters = SearchFilters(
            metadata={"conversation": conversation_id}, ranges={"position": (None, last)}
        )
        namespace = MemoryOwner.for_user(owner).key
        hits = await asyncio.to_thread(
            self.index.search, namespace, query, query_vector, k=limit * 3, filters=filters
        )
        relevant = [
            hit.ref_id
            for hit in hits
            if hit.bm25_rank is not None or (hit.similarity or 0.0) >= MIN_RECALL_SIMILARITY
        ][:limit]
        chosen = await asyncio.to_thread(self._item_ids, relevant)
        return [item for item in turns if item.id in chosen]

    def _item_ids(self, refs: list[int]) -> set[str]:
        if not refs:
            return set()
        with self.database.session() as session:
            return set(
                session.scalars(
                    select(ConversationSearchRef.item_id).where(ConversationSearchRef.id.in_(refs))
                )
            )

    def recaller(self, owner: int | None, conversation_id: str) -> Recaller:
        """A `Recaller` for one conversation; the query is embedded once per turn."""
        vectors: dict[str, list[float]] = {}

        async def recall(query: str, compacted: list[StoredItem], limit: int) -> list[StoredItem]:
            if query not in vectors and query.strip():
                vectors[query] = (await self.embed([query]))[0]
            return await self.recall(
                owner, conversation_id, query, compacted, limit, query_vector=vectors.get(query)
            )

        return recall

    # --- topics ----------------------------------------------------------------------------

    def closest_turn(
        self, owner: int | None, vector: Sequence[float], *, min_similarity: float
    ) -> tuple[str, str, float] | None:
        """The user's own message closest in meaning to ``vector``, as (conversation id,
        item id, similarity), if one reaches ``min_similarity``."""
        namespace = MemoryOwner.for_user(owner).key
        hits = self.index.search(
            namespace, "", vector, k=1, filters=SearchFilters(kind="user"), mode="vector"
        )
        if not hits or (hits[0].similarity or 0.0) < min_similarity:
            return None
        with self.database.session() as session:
            ref = session.get(ConversationSearchRef, hits[0].ref_id)
            if ref is None:
                return None
            return ref.conversation_id, ref.item_id, float(hits[0].similarity or 0.0)
