"""Memory with the real kernel: all-MiniLM embeddings through the embed syscall, and fact
extraction by the embedded SmolLM2 under a JSON schema (grammar-constrained)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmasos.config import load_settings
from llmasos.kernel.client import InProcessEngineClient
from llmasos.memory.memories import KINDS, MemoryOwner, MemoryStore
from llmasos.models import open_model_store
from llmasos.models.builtin import BUILTINS, package_path
from llmasos.storage import open_database

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        any(package_path(b) is None for b in BUILTINS), reason="embedded model packages missing"
    ),
]
OWNER = MemoryOwner.for_user(None)


@pytest.fixture
def kernel_store(tmp_path: Path) -> Iterator[tuple[MemoryStore, InProcessEngineClient]]:
    settings = load_settings(home=tmp_path / "home", threads=2, context_length=1024)
    engine = InProcessEngineClient(settings, open_model_store(settings))
    with open_database(settings) as database:
        yield MemoryStore.open(settings, database, engine), engine
    asyncio.run(engine.close())


def test_search_finds_paraphrases_by_meaning(
    kernel_store: tuple[MemoryStore, InProcessEngineClient],
) -> None:
    store, _ = kernel_store

    async def scenario() -> None:
        dog = await store.add(OWNER, "My dog Rex is a three-year-old beagle.")
        await store.add(OWNER, "I work night shifts at the hospital.")
        await store.add(OWNER, "I am allergic to shellfish.", kind="preference")
        same = await store.add(OWNER, "my dog rex is a three year old beagle")
        assert not same.created and same.item.id == dog.item.id
        found = await store.search(OWNER, "what kind of pet do I have?", k=1, mode="vector")
        assert [i.id for i in found] == [dog.item.id] and (found[0].score or 0) > 0.3
        food = await store.search(OWNER, "seafood I cannot eat", k=1)
        assert food[0].text == "I am allergic to shellfish."

    asyncio.run(scenario())


def test_extraction_returns_schema_valid_items(
    kernel_store: tuple[MemoryStore, InProcessEngineClient],
) -> None:
    store, _ = kernel_store
    messages = [
        {"role": "user", "content": "Hi! I'm Lena, I live in Vienna and I love climbing."},
        {"role": "assistant", "content": "Nice to meet you, Lena!"},
    ]
    extraction = asyncio.run(store.extract(OWNER, messages, max_facts=3))
    assert extraction.model and extraction.completion_tokens > 0
    assert len(extraction.results) <= 3  # what the tiny model finds varies; the shape does not
    for result in extraction.results:
        assert result.item.text.strip() and result.item.kind in KINDS
        assert result.item.source == "conversation"
    assert store.count(OWNER) == len({r.item.id for r in extraction.results})


def test_compaction_recall_finds_a_paraphrase_by_meaning(
    kernel_store: tuple[MemoryStore, InProcessEngineClient], tmp_path: Path
) -> None:
    """Words alone miss "what do I do for a living?" for "I work as a pediatric nurse";
    the conversation index finds it by meaning."""
    from llmasos.memory import ConversationStore
    from llmasos.memory.compaction import recall as recall_by_words
    from llmasos.memory.items import message_item
    from llmasos.memory.recall import ConversationIndex
    from llmasos.storage import ContentCipher

    store, engine = kernel_store
    settings = load_settings(home=tmp_path / "home", threads=2, context_length=1024)
    conversations = ConversationStore(store.database, ContentCipher.from_settings(settings))
    index = ConversationIndex.open(settings, store.database, engine)
    conversation = conversations.create(None)
    texts = [
        "I work as a pediatric nurse at the city hospital.",
        "That sounds demanding.",
        "The weather was lovely on Sunday.",
        "Good to hear.",
        "My sister plays the cello in an orchestra.",
    ]
    turns = conversations.add_items(
        None,
        conversation.id,
        [message_item("user" if n % 2 == 0 else "assistant", t) for n, t in enumerate(texts)],
    )
    question = "What do I do for a living?"
    assert turns[0] not in recall_by_words(question, turns)
    found = asyncio.run(index.recall(None, conversation.id, question, turns, 1))
    assert [item.id for item in found] == [turns[0].id]
