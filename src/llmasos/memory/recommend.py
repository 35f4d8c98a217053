"""Personalization: rank what to suggest to a user from what they did and what they told us.

`Recommender.recommend` scores every candidate (a named service, an installed app, a
follow-up action) the caller offers, from four signals, and says which one carried each
suggestion:

* **use** — the user's own usage records of the last 30 days (``/v1/services/NAME`` calls,
  requests made through an app);
* **memory** — the cosine similarity between the candidate's description and the user's
  closest memory item (through the shared retrieval index, so no extra embedding per item);
* **talk** — the same against the user's own messages in their stored conversations (the
  conversation collection of the shared index, `llmasos.memory.recall`): what they talk
  about, even when they never asked the OS to remember it;
* **popularity** — everyone's usage in the same window, the only signal at cold start.

Follow-up actions come from the user's state (memories but memory off in chat, many items
to review, a service used often). The candidates are given by the caller (the server knows
the service registry and app store; this layer does not).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from llmasos.memory.items import item_text
from llmasos.memory.memories import MemoryOwner, MemoryStore, memory_id
from llmasos.memory.recall import ConversationIndex
from llmasos.storage.schema import ITEM_CONTENT_CONTEXT, ConversationItem, Memory, UsageRecord

WINDOW = timedelta(days=30)
MIN_MEMORY_SIMILARITY = 0.3
USE_WEIGHT, MEMORY_WEIGHT, TALK_WEIGHT, POPULAR_WEIGHT = 0.5, 0.35, 0.3, 0.15
CandidateType = Literal["service", "app", "action"]


@dataclass(frozen=True)
class Candidate:
    type: CandidateType
    name: str
    description: str


@dataclass(frozen=True)
class Recommendation:
    type: CandidateType
    name: str
    score: float
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Recommendations:
    items: list[Recommendation]
    cold_start: bool


def usage_key(endpoint: str, app: str | None) -> list[tuple[CandidateType, str]]:
    """What a usage record counts towards: a service, an app, or both."""
    keys: list[tuple[CandidateType, str]] = []
    if endpoint.startswith("/v1/services/"):
        keys.append(("service", endpoint[len("/v1/services/") :].split("/", 1)[0]))
    if app:
        keys.append(("app", app))
    return keys


class Recommender:
    def __init__(self, memory: MemoryStore, conversations: ConversationIndex | None = None) -> None:
        self.memory = memory
        self.conversations = conversations
        self.database = memory.database

    async def recommend(
        self,
        owner: MemoryOwner,
        candidates: Sequence[Candidate],
        *,
        limit: int = 10,
        now: datetime | None = None,
    ) -> Recommendations:
        since = (now or datetime.now(UTC)) - WINDOW
        mine, everyone = await asyncio.to_thread(self._usage, owner, since)
        memory_count = await asyncio.to_thread(self.memory.count, owner)
        vectors: list[list[float]] = []
        if candidates and (memory_count or self.conversations is not None):
            vectors = await self.memory.embed([c.description or c.name for c in candidates])
        closest = await self._closest_memories(owner, candidates, vectors) if memory_count else {}
        talked = await self._closest_turns(owner, candidates, vectors)
        cold = not mine and not closest and not talked
        top_use = max(mine.values(), default=0)
        top_popular = max(everyone.values(), default=0)
        scored: list[Recommendation] = []
        for candidate in candidates:
            key = (candidate.type, candidate.name)
            used = mine.get(key, 0)
            popular = everyone.get(key, 0)
            memory_hit = closest.get(key)
            talk_hit = talked.get(key)
            signals = {
                "use": USE_WEIGHT * _log_share(used, top_use),
                "memory": MEMORY_WEIGHT * (memory_hit[1] if memory_hit else 0.0),
                "talk": TALK_WEIGHT * (talk_hit[1] if talk_hit else 0.0),
                "popularity": POPULAR_WEIGHT * _log_share(popular, top_popular),
            }
            score = sum(signals.values())
            if score <= 0:
                continue
            strongest = max(signals, key=lambda name: signals[name])
            detail: dict[str, Any] = {"uses_30d": used, "uses_30d_everyone": popular}
            if strongest == "use":
                reason = f"you used it {used} time{'s' if used != 1 else ''} in the last 30 days"
            elif strongest == "memory" and memory_hit:
                reason = f"related to what you told me: {memory_hit[2]!r}"
                detail["memory_id"] = memory_hit[0]
            elif strongest == "talk" and talk_hit:
                reason = f"related to what you talked about: {talk_hit[2]!r}"
                detail["conversation_id"], detail["item_id"] = talk_hit[0].split("/", 1)
            else:
                reason = f"popular: used {popular} times by everyone in the last 30 days"
            scored.append(Recommendation(candidate.type, candidate.name, score, reason, detail))
        scored.extend(await asyncio.to_thread(self._actions, owner, mine, memory_count))
        if not scored:  # nothing used by anyone yet: suggest the offer in its given order
            scored = [
                Recommendation(c.type, c.name, 0.01 / (i + 1), "a place to start", {})
                for i, c in enumerate(candidates)
            ]
        scored.sort(key=lambda r: -r.score)
        return Recommendations(scored[:limit], cold_start=cold)

    def _usage(
        self, owner: MemoryOwner, since: datetime
    ) -> tuple[Counter[tuple[CandidateType, str]], Counter[tuple[CandidateType, str]]]:
        mine: Counter[tuple[CandidateType, str]] = Counter()
        everyone: Counter[tuple[CandidateType, str]] = Counter()
        statement = (
            select(UsageRecord.user_id, UsageRecord.endpoint, UsageRecord.app, func.count())
            .where(UsageRecord.created_at >= since, UsageRecord.status < 400)
            .group_by(UsageRecord.user_id, UsageRecord.endpoint, UsageRecord.app)
        )
        with self.database.session() as session:
            for user_id, endpoint, app, count in session.execute(statement):
                for key in usage_key(endpoint, app):
                    everyone[key] += count
                    if (owner.user_id is not None and user_id == owner.user_id) or (
                        owner.user_id is None and user_id is None
                    ):
                        mine[key] += count
        return mine, everyone

    async def _closest_turns(
        self, owner: MemoryOwner, candidates: Sequence[Candidate], vectors: list[list[float]]
    ) -> dict[tuple[CandidateType, str], tuple[str, float, str]]:
        """Per candidate: ("conversation/item", similarity, the message's opening) of the
        user's own message closest to it, when close enough."""
        index = self.conversations
        if index is None or not candidates:
            return {}

        def run() -> dict[tuple[CandidateType, str], tuple[str, float, str]]:
            found: dict[tuple[CandidateType, str], tuple[str, float, str]] = {}
            for candidate, vector in zip(candidates, vectors, strict=True):
                hit = index.closest_turn(
                    owner.user_id, vector, min_similarity=MIN_MEMORY_SIMILARITY
                )
                if hit is None:
                    continue
                conversation_id, item_id, similarity = hit
                text = self._message_text(item_id)
                if text:
                    found[(candidate.type, candidate.name)] = (
                        f"{conversation_id}/{item_id}",
                        similarity,
                        text[:120],
                    )
            return found

        return await asyncio.to_thread(run)

    def _message_text(self, item_id: str) -> str:
        with self.database.session() as session:
            row = session.get(ConversationItem, item_id)
            if row is None:
                return ""
            data = self.memory.cipher.decrypt(
                row.content, context=ITEM_CONTENT_CONTEXT.format(id=row.id)
            )
            return item_text(json.loads(data))

    async def _closest_memories(
        self, owner: MemoryOwner, candidates: Sequence[Candidate], vectors: list[list[float]]
    ) -> dict[tuple[CandidateType, str], tuple[str, float, str]]:
        if not candidates:
            return {}

        def run() -> dict[tuple[CandidateType, str], tuple[str, float, str]]:
            found: dict[tuple[CandidateType, str], tuple[int, float]] = {}
            for candidate, vector in zip(candidates, vectors, strict=True):
                hits = self.memory.index.search(owner.key, "", vector, k=1, mode="vector")
                if hits and (hits[0].similarity or 0.0) >= MIN_MEMORY_SIMILARITY:
                    found[(candidate.type, candidate.name)] = (
                        hits[0].ref_id,
                        float(hits[0].similarity or 0.0),
                    )
            texts = self._texts({ref for ref, _ in found.values()}, owner)
            return {
                key: (memory_id(ref), similarity, texts.get(ref, "")[:120])
                for key, (ref, similarity) in found.items()
                if ref in texts
            }

        return await asyncio.to_thread(run)

    def _texts(self, refs: set[int], owner: MemoryOwner) -> dict[int, str]:
        if not refs:
            return {}
        with self.database.session() as session:
            rows = session.scalars(select(Memory).where(Memory.id.in_(refs)))  # by key, as search
            return {
                row.id: self.memory.cipher.decrypt_text(row.text, context=f"memory:{row.id}")
                for row in rows
                if row.owner == owner.key
            }

    def _actions(
        self,
        owner: MemoryOwner,
        mine: Counter[tuple[CandidateType, str]],
        memory_count: int,
    ) -> list[Recommendation]:
        actions: list[Recommendation] = []
        if memory_count and not self.memory.chat_enabled(owner):
            actions.append(
                Recommendation(
                    "action",
                    "memory.enable_chat",
                    0.3,
                    f"you have {memory_count} memories, but chat does not use them yet",
                    {"command": "llmasos memory enable"},
                )
            )
        if memory_count >= 50:
            actions.append(
                Recommendation(
                    "action",
                    "memory.review",
                    0.2,
                    f"you have {memory_count} memories; review what the OS remembers",
                    {"command": "llmasos memory list"},
                )
            )
        if not memory_count and mine:
            actions.append(
                Recommendation(
                    "action",
                    "memory.add",
                    0.2,
                    "tell the OS about yourself so answers fit you",
                    {"command": 'llmasos memory add "I prefer short answers"'},
                )
            )
        return actions


def _log_share(value: int, top: int) -> float:
    """``value`` relative to the largest, on a log scale (0..1)."""
    if value <= 0 or top <= 0:
        return 0.0
    return math.log1p(value) / math.log1p(top)
