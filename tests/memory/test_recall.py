"""Conversation turns in the shared index: what is indexed, what recall returns, what a
delete removes, and compaction recalling through the index.

The embedder is the word-bag fake of ``conftest.py`` (texts sharing words are close); the
real all-MiniLM case (a paraphrase found by meaning) is in ``test_memory_model.py``."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select

from llmasos.config import Settings
from llmasos.memory import ConversationStore, StoredItem, fit_context, input_items
from llmasos.memory.conversations import SEARCH_COLLECTION, NewItem
from llmasos.memory.items import message_item, summary_item
from llmasos.memory.recall import ConversationIndex
from llmasos.storage import Database
from llmasos.storage.schema import RetrievalEntry
from tests.memory.conftest import WordEngine
from tests.memory.test_compaction import CountingKernel


def says(*texts: str) -> list[dict[str, object]]:
    return [message_item("user" if n % 2 == 0 else "assistant", t) for n, t in enumerate(texts)]


def entries(database: Database) -> int:
    with database.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(RetrievalEntry)
                .where(RetrievalEntry.collection == SEARCH_COLLECTION)
            )
            or 0
        )


def index_of(settings: Settings, database: Database) -> ConversationIndex:
    return ConversationIndex.open(settings, database, WordEngine())


def test_turns_are_indexed_once_and_summaries_never(
    settings: Settings, database: Database, conversation_store: ConversationStore
) -> None:
    index = index_of(settings, database)
    conversation = conversation_store.create(None)
    items = conversation_store.add_items(
        None, conversation.id, says("my locker code is 4812", "noted", "", "thanks")
    )
    summary = conversation_store.add_items(None, conversation.id, [summary_item("a summary")])
    assert asyncio.run(index.index_items(None, conversation.id, items + summary)) == 3
    assert asyncio.run(index.index_items(None, conversation.id, items)) == 0  # idempotent
    assert entries(database) == 3


def test_recall_searches_only_the_compacted_turns_of_one_conversation(
    settings: Settings, database: Database, conversation_store: ConversationStore
) -> None:
    index = index_of(settings, database)
    store = conversation_store
    first = store.create(None)
    turns = store.add_items(
        None,
        first.id,
        says(
            "my locker code is 4812 at the gym",
            "I will remember the locker code",
            "what a sunny day",
            "indeed it is sunny",
            "the locker code changed to 9977",
        ),
    )
    other = store.create(None)
    store.add_items(None, other.id, says("the locker code of my office is 1111"))

    async def recall(compacted: list[StoredItem]) -> list[str]:
        found = await index.recall(None, first.id, "locker code please", compacted, 3)
        return [item.id for item in found]

    order = [item.id for item in turns]
    found = asyncio.run(recall(turns[:4]))
    assert found[:2] == order[:2] and order[4] not in found  # only compacted turns, in order
    assert asyncio.run(recall([])) == []
    found = asyncio.run(recall(turns))
    assert {order[0], order[1], order[4]} <= set(found) and found == sorted(found, key=order.index)
    assert entries(database) == 5  # recall indexed what it searched, not the other one


def test_deleting_items_and_conversations_removes_their_entries(
    settings: Settings, database: Database, conversation_store: ConversationStore
) -> None:
    index = index_of(settings, database)
    store = conversation_store
    conversation = store.create(None)
    items = store.add_items(None, conversation.id, says("alpha one", "beta two", "gamma three"))
    asyncio.run(index.index_items(None, conversation.id, items))
    store.delete_item(None, conversation.id, items[1].id)
    assert entries(database) == 2
    found = asyncio.run(index.recall(None, conversation.id, "beta two", items, 3))
    assert items[1].id not in [item.id for item in found]
    store.delete(None, conversation.id)
    assert entries(database) == 0


def test_compaction_recalls_through_the_index(
    settings: Settings, database: Database, conversation_store: ConversationStore
) -> None:
    index = index_of(settings, database)
    store = conversation_store
    conversation = store.create(None)
    texts = ["my locker code is 4812."] + [f"chatter {'talk ' * 10}t{n}" for n in range(1, 60)]
    history = store.add_items(None, conversation.id, says(*texts))
    kernel = CountingKernel(window=400)
    plan = asyncio.run(
        fit_context(
            kernel,
            model=None,
            tenant="alice",
            history=history,
            new_items=input_items("what is my locker code?"),
            max_output_tokens=50,
            recaller=index.recaller(None, conversation.id),
        )
    )
    assert plan.compaction is not None and plan.recalled == [history[0].id]
    assert entries(database) == plan.compaction.summarized_items  # the compacted turns
    # A stored turn after the reply: the summary is not indexed, the turn is.
    written = store.save_response(
        None,
        {"id": "resp_1", "model": "m", "status": "completed", "output": []},
        inputs=[NewItem(plan.new_summary.body, summary_through=0)] if plan.new_summary else [],
        outputs=[NewItem(message_item("assistant", "4812"))],
        conversation_id=conversation.id,
    )
    added = asyncio.run(index.index_items(None, conversation.id, written))
    assert added == 1 and written[-1].created_at <= datetime.now(UTC)
