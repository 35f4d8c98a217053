"""Memory items: add (with dedupe), list, search, edit, forget — scoped to one owner."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.memory.memories import (
    MAX_TEXT_CHARS,
    MemoryOwner,
    MemoryStore,
    NewMemory,
    PayloadTooLargeError,
)
from llmasos.memory.tools import MEMORY_TOOLS, call_memory_tool
from llmasos.retrieval.interface import SearchFilters
from llmasos.storage import Database
from llmasos.storage.rotation import rotate_master_key
from llmasos.storage.schema import Memory, RetrievalEntry, User
from tests.memory.conftest import ALICE, BOB, WordEngine


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_add_get_and_the_same_fact_twice_is_one_item(store: MemoryStore) -> None:
    first = run(store.add(ALICE, "Alice is allergic to peanuts.", metadata={"topic": "health"}))
    assert first.created and first.item.id.startswith("mem_")
    again = run(store.add(ALICE, "  alice is ALLERGIC to peanuts ", metadata={"seen": 2}))
    assert not again.created and again.item.id == first.item.id
    assert again.item.metadata == {"topic": "health", "seen": 2}  # merged, never replaced
    reordered = run(store.add(ALICE, "To peanuts Alice is allergic"))  # same words: similar
    assert not reordered.created and reordered.item.id == first.item.id
    assert store.count(ALICE) == 1
    other_kind = run(store.add(ALICE, "To peanuts Alice is allergic", kind="event"))
    assert other_kind.created  # similarity only merges items of one kind
    item = store.get(ALICE, first.item.id)
    assert item.text == "Alice is allergic to peanuts." and item.kind == "fact"
    assert item.source == "user" and item.created_at <= item.updated_at


def test_another_owners_ids_are_not_found(store: MemoryStore) -> None:
    mine = run(store.add(ALICE, "Alice likes jazz")).item.id
    for owner, memory in [
        (BOB, mine),
        (ALICE, "mem_999999"),
        (ALICE, "nonsense"),
        (ALICE, "mem_0"),
    ]:
        with pytest.raises(NotFoundError):
            store.get(owner, memory)
    with pytest.raises(NotFoundError):
        store.delete(BOB, mine)
    with pytest.raises(NotFoundError):
        run(store.update(BOB, mine, text="Bob took it"))
    assert store.get(ALICE, mine).text == "Alice likes jazz"
    assert run(store.search(BOB, "jazz")) == []


def test_list_filters_and_pages(store: MemoryStore) -> None:
    ids = [
        run(store.add(ALICE, f"Alice likes {thing}", kind=kind, metadata={"n": n % 2})).item.id
        for n, (thing, kind) in enumerate(
            [
                ("apples", "fact"),
                ("boats", "preference"),
                ("clouds", "fact"),
                ("dunes", "event"),
                ("eagles", "fact"),
            ]
        )
    ]
    assert [i.id for i in store.list_items(ALICE)] == ids[::-1]
    assert [i.id for i in store.list_items(ALICE, kind="fact")] == [ids[4], ids[2], ids[0]]
    assert [i.id for i in store.list_items(ALICE, metadata={"n": 1})] == [ids[3], ids[1]]
    page = store.list_items(ALICE, limit=2)
    assert [i.id for i in store.list_items(ALICE, limit=2, after=page[-1].id)] == ids[2::-1][:2]
    with pytest.raises(InvalidRequestError, match="kind"):
        store.list_items(ALICE, kind="gossip")


def test_search_ranks_and_filters(store: MemoryStore) -> None:
    run(store.add(ALICE, "Alice moved to Lisbon", kind="event", metadata={"city": "lisbon"}))
    tea = run(store.add(ALICE, "Alice prefers green tea", kind="preference")).item.id
    run(store.add(ALICE, "Alice's brother is a pilot"))
    run(store.add(BOB, "Bob prefers green tea"))
    found = run(store.search(ALICE, "which tea does she prefer?", k=2))
    assert found[0].id == tea and found[0].score is not None
    assert [i.text for i in run(store.search(ALICE, "tea", mode="bm25"))] == [
        "Alice prefers green tea"
    ]
    lisbon = SearchFilters(metadata={"city": "lisbon"})
    assert [i.kind for i in run(store.search(ALICE, "Alice", filters=lisbon))] == ["event"]
    later = SearchFilters(since=datetime.now(UTC) + timedelta(minutes=5))
    assert run(store.search(ALICE, "Alice", filters=later)) == []
    for bad, field in [("", "query"), ("x" * (MAX_TEXT_CHARS + 1), "query")]:
        with pytest.raises(InvalidRequestError) as caught:
            run(store.search(ALICE, bad))
        assert caught.value.param == field
    with pytest.raises(InvalidRequestError, match="k"):
        run(store.search(ALICE, "tea", k=0))


def test_bad_items_are_refused_before_anything_is_written(store: MemoryStore) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        run(store.add(ALICE, "x" * (MAX_TEXT_CHARS + 1)))
    assert caught.value.status_code == 413 and caught.value.param == "text"
    with pytest.raises(PayloadTooLargeError):
        run(store.add(ALICE, "big metadata", metadata={"blob": "y" * 5000}))
    for kwargs, field in [({"kind": "gossip"}, "kind"), ({"source": "moon"}, "source")]:
        with pytest.raises(InvalidRequestError) as error:
            run(store.add(ALICE, "fine text", **kwargs))  # type: ignore[arg-type]
        assert error.value.param == field
    with pytest.raises(InvalidRequestError) as error:
        run(store.add_many(ALICE, [NewMemory("ok"), NewMemory("  ")]))
    assert error.value.param == "items[1].text"
    assert store.count(ALICE) == 0


def test_update_and_forget(store: MemoryStore) -> None:
    item = run(store.add(ALICE, "Alice drinks tea", metadata={"a": 1})).item
    changed = run(store.update(ALICE, item.id, text="Alice drinks coffee", metadata={"b": 2}))
    assert changed.text == "Alice drinks coffee" and changed.metadata == {"b": 2}
    assert [i.id for i in run(store.search(ALICE, "coffee", mode="bm25"))] == [item.id]
    assert run(store.search(ALICE, "tea", mode="bm25")) == []
    other = run(store.add(ALICE, "Alice owns a bike")).item
    with pytest.raises(InvalidRequestError, match="already"):
        run(store.update(ALICE, other.id, text="alice drinks coffee"))
    store.delete(ALICE, item.id)
    with pytest.raises(NotFoundError):
        store.get(ALICE, item.id)
    run(store.add(BOB, "Bob owns a bike"))
    assert store.delete_all(ALICE) == 1
    assert store.list_items(ALICE) == [] and run(store.search(ALICE, "bike")) == []
    assert store.count(BOB) == 1


def test_text_is_encrypted_at_rest_and_rotation_keeps_it_searchable(
    settings: Settings, database: Database, engine: WordEngine, store: MemoryStore
) -> None:
    item = run(store.add(ALICE, "Alice's passport number is X123")).item
    with database.session() as session:
        raw = session.scalar(select(Memory.text))
        terms = session.scalar(select(RetrievalEntry.terms))
    assert raw is not None and b"passport" not in raw
    assert terms is not None and "passport" not in terms
    result = rotate_master_key(settings, database)
    assert result.reencrypted["memories.text"] == 1
    rotated = MemoryStore.open(settings, database, engine)  # a restart after the rotation
    assert rotated.get(ALICE, item.id).text == "Alice's passport number is X123"
    assert [i.id for i in run(rotated.search(ALICE, "passport", mode="bm25"))] == [item.id]
    assert not run(rotated.add(ALICE, "alice's passport number is x123")).created
    assert rotated.reindex_stale() == 0


def test_deleting_a_user_deletes_their_memories(database: Database, store: MemoryStore) -> None:
    with database.session(write=True) as session:
        user = User(name="erin", role="user")
        session.add(user)
        session.flush()
        owner = MemoryOwner.for_user(user.id)
    run(store.add(owner, "Erin plays the cello"))
    with database.session(write=True) as session:
        session.execute(text("DELETE FROM users WHERE name = 'erin'"))
    with database.session() as session:
        assert session.scalar(select(Memory.id)) is None
        assert session.scalar(select(RetrievalEntry.id)) is None
    assert run(store.search(owner, "cello")) == []


def test_settings_default_off(store: MemoryStore) -> None:
    assert not store.chat_enabled(ALICE)
    store.set_chat_enabled(ALICE, True)
    assert store.chat_enabled(ALICE) and not store.chat_enabled(BOB)
    store.set_chat_enabled(ALICE, False)
    assert not store.chat_enabled(ALICE)


def test_extraction_adds_what_the_model_lists(engine: WordEngine, store: MemoryStore) -> None:
    answer = {
        "facts": [
            {"text": "The user lives in Oslo", "kind": "fact"},
            {"text": "The user prefers tea", "kind": "preference"},
            {"text": "The user lives in Oslo", "kind": "fact"},
        ]
    }
    engine.script = lambda request: [json.dumps(answer)]
    messages = [{"role": "user", "content": "I live in Oslo and I like tea."}]
    extraction = run(store.extract(ALICE, messages, source_ref="conv_1"))
    request = engine.requests[-1]
    assert request.sampling.structured is not None
    assert request.sampling.structured.kind == "json_schema"
    assert [r.created for r in extraction.results] == [True, True, False]
    items = store.list_items(ALICE)
    assert {(i.text, i.kind, i.source, i.source_ref) for i in items} == {
        ("The user lives in Oslo", "fact", "conversation", "conv_1"),
        ("The user prefers tea", "preference", "conversation", "conv_1"),
    }
    engine.script = lambda request: ['{"facts": [{"text": "cut sh']  # an answer cut short
    assert run(store.extract(ALICE, messages)).results == []
    with pytest.raises(InvalidRequestError):
        run(store.extract(ALICE, []))


def test_memory_tools(store: MemoryStore) -> None:
    assert {t["function"]["name"] for t in MEMORY_TOOLS} == {"memory_search", "memory_add"}
    added = json.loads(run(call_memory_tool(store, ALICE, "memory_add", '{"text": "Alice sails"}')))
    assert added["status"] == "created"
    found = json.loads(run(call_memory_tool(store, ALICE, "memory_search", {"query": "sails"})))
    assert found["results"][0]["id"] == added["id"]
    for name, arguments in [
        ("memory_add", "{not json"),
        ("memory_add", '{"colour": 1}'),
        ("memory_drop", "{}"),
        ("memory_add", '{"text": ""}'),
    ]:
        assert "error" in json.loads(run(call_memory_tool(store, ALICE, name, arguments)))
