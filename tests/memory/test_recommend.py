"""Recommendations from usage records and memories, with reasons; cold start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from llmasos.config import Settings
from llmasos.memory import ConversationStore
from llmasos.memory.items import message_item
from llmasos.memory.memories import MemoryOwner, MemoryStore
from llmasos.memory.recall import ConversationIndex
from llmasos.memory.recommend import Candidate, Recommender
from llmasos.storage import ContentCipher, Database
from llmasos.storage.schema import UsageRecord, User
from tests.memory.conftest import WordEngine

CANDIDATES = [
    Candidate("service", "summarize", "Summarize a text in a few sentences."),
    Candidate("service", "translate", "Translate a text into a target language."),
    Candidate("app", "tutor", "Quiz questions on a topic, graded."),
]


def usage(
    user_id: int | None, endpoint: str, n: int, *, days_ago: int = 1, app: str | None = None
) -> list[UsageRecord]:
    when = datetime.now(UTC) - timedelta(days=days_ago)
    return [
        UsageRecord(
            created_at=when,
            user_id=user_id,
            user_name=str(user_id),
            app=app,
            model="smollm2",
            endpoint=endpoint,
            prompt_tokens=1,
            completion_tokens=1,
            latency_ms=1,
            status=200,
        )
        for _ in range(n)
    ]


def test_history_memory_and_cold_start(database: Database, store: MemoryStore) -> None:
    with database.session(write=True) as session:
        users = [User(name=name, role="user") for name in ("ann", "bo", "cy")]
        session.add_all(users)
        session.flush()
        ann, bo, cy = (MemoryOwner.for_user(u.id) for u in users)
        session.add_all(usage(ann.user_id, "/v1/services/summarize", 5))
        session.add_all(usage(bo.user_id, "/v1/services/translate", 20))
        session.add_all(usage(bo.user_id, "/v1/chat/completions", 3, app="tutor"))
        session.add_all(usage(ann.user_id, "/v1/services/translate", 50, days_ago=90))  # too old
    recommender = Recommender(store)

    mine = asyncio.run(recommender.recommend(ann, CANDIDATES))
    assert not mine.cold_start
    assert (mine.items[0].name, mine.items[0].reason) == (
        "summarize",
        "you used it 5 times in the last 30 days",
    )
    assert mine.items[0].detail["uses_30d"] == 5
    assert any(r.type == "action" and r.name == "memory.add" for r in mine.items)

    cold = asyncio.run(recommender.recommend(cy, CANDIDATES))
    assert cold.cold_start and cold.items[0].name == "translate"
    assert cold.items[0].reason.startswith("popular")
    assert {r.name for r in cold.items} >= {"translate", "tutor"}

    asyncio.run(store.add(cy, "I want to translate letters into a target language for my aunt"))
    warm = asyncio.run(recommender.recommend(cy, CANDIDATES))
    translate = next(r for r in warm.items if r.name == "translate")
    assert not warm.cold_start and translate.detail.get("memory_id", "").startswith("mem_")
    assert any(r.name == "memory.enable_chat" for r in warm.items)
    assert len(asyncio.run(recommender.recommend(cy, CANDIDATES, limit=2)).items) == 2


def test_nothing_used_by_anyone_still_offers_something(store: MemoryStore) -> None:
    result = asyncio.run(Recommender(store).recommend(MemoryOwner.for_user(None), CANDIDATES))
    assert result.cold_start and [r.name for r in result.items] == [c.name for c in CANDIDATES]
    assert all(r.reason for r in result.items)


def test_what_a_user_talks_about_is_a_signal(
    settings: Settings, database: Database, store: MemoryStore, engine: WordEngine
) -> None:
    with database.session(write=True) as session:
        user = User(name="dee", role="user")
        session.add(user)
        session.flush()
        owner = MemoryOwner.for_user(user.id)
    conversations = ConversationStore(database, ContentCipher.from_settings(settings))
    index = ConversationIndex.open(settings, database, engine)
    conversation = conversations.create(owner.user_id)
    turns = conversations.add_items(
        owner.user_id,
        conversation.id,
        [
            message_item("user", "please translate a text into a target language for me"),
            message_item("assistant", "Quiz questions on a topic, graded."),  # not the user's
        ],
    )
    asyncio.run(index.index_items(owner.user_id, conversation.id, turns))
    result = asyncio.run(Recommender(store, index).recommend(owner, CANDIDATES))
    top = result.items[0]
    assert (top.name, top.reason) == (
        "translate",
        "related to what you talked about: 'please translate a text into a target language for me'",
    )
    assert top.detail["item_id"] == turns[0].id and not result.cold_start
    assert all(r.name != "tutor" for r in result.items)  # the assistant's words are not signal
    other = MemoryOwner.for_user(None)  # another owner sees nothing of it
    assert asyncio.run(Recommender(store, index).recommend(other, CANDIDATES)).cold_start
