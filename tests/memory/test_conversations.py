"""The conversation store on SQLite and PostgreSQL: ownership, order, encryption, limits."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, text

from llmasos.access.users import UserManager
from llmasos.config import Settings
from llmasos.errors import (
    DatabaseUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
)
from llmasos.memory import ConversationStore, input_items
from llmasos.memory.conversations import NewItem
from llmasos.memory.items import message_item
from llmasos.storage import ContentCipher, Database, load_master_key
from llmasos.storage.rotation import rotate_master_key
from llmasos.storage.schema import ConversationItem, StoredResponse, User


def says(*texts: str) -> list[dict[str, object]]:
    return [message_item("user", text) for text in texts]


def user_ids(database: Database, *names: str) -> list[int]:
    users = UserManager(database)
    return [users.create(name, role="user").id for name in names]


def test_conversation_life_cycle(conversation_store: ConversationStore) -> None:
    store = conversation_store
    created = store.create(None, {"topic": "travel"}, input_items("Hello there"))
    assert created.id.startswith("conv_") and created.items == 1
    assert store.get(None, created.id).metadata == {"topic": "travel"}
    assert store.update(None, created.id, {"topic": "food"}).metadata == {"topic": "food"}
    added = store.add_items(
        None,
        created.id,
        input_items(
            [{"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "More?"}]
        ),
    )
    assert [i.body["role"] for i in added] == ["assistant", "user"]
    assert added[0].body["content"][0]["type"] == "output_text"
    assert [c.id for c in store.list_conversations(None)] == [created.id]
    item = store.get_item(None, created.id, added[0].id)
    assert item.to_openai()["content"][0]["text"] == "Hi!"
    assert store.delete_item(None, created.id, added[0].id).items == 2
    with pytest.raises(NotFoundError):
        store.get_item(None, created.id, added[0].id)
    store.delete(None, created.id)
    with pytest.raises(NotFoundError):
        store.get(None, created.id)
    assert store.list_conversations(None) == []


def test_items_page_in_both_orders(conversation_store: ConversationStore) -> None:
    store = conversation_store
    conversation = store.create(None)
    for start in range(0, 25, 5):
        store.add_items(None, conversation.id, says(*(f"m{i}" for i in range(start, start + 5))))
    texts: list[str] = []
    after = None
    while True:
        page = store.list_items(None, conversation.id, after=after, limit=10, order="asc")
        texts += [i.body["content"][0]["text"] for i in page.data]
        if not page.has_more:
            break
        after = page.data[-1].id
    assert texts == [f"m{i}" for i in range(25)]
    newest = store.list_items(None, conversation.id, limit=3)
    assert [i.body["content"][0]["text"] for i in newest.data] == ["m24", "m23", "m22"]
    assert newest.has_more and newest.to_openai()["last_id"] == newest.data[-1].id


def test_another_owners_ids_are_not_found(
    conversation_store: ConversationStore, database: Database
) -> None:
    alice, bob = user_ids(database, "alice", "bob")
    store = conversation_store
    mine = store.create(alice, {}, input_items("secret plans"))
    item = store.items(alice, mine.id)[0]
    for call in (
        lambda: store.get(bob, mine.id),
        lambda: store.items(bob, mine.id),
        lambda: store.add_items(bob, mine.id, input_items("x")),
        lambda: store.get_item(bob, mine.id, item.id),
        lambda: store.delete(bob, mine.id),
        lambda: store.get(None, mine.id),
    ):
        with pytest.raises(NotFoundError):
            call()
    assert store.list_conversations(bob) == [] and len(store.list_conversations(alice)) == 1


def test_content_is_encrypted_at_rest_and_bound_to_its_row(
    conversation_store: ConversationStore, database: Database
) -> None:
    store = conversation_store
    conversation = store.create(None, {}, input_items("my locker code is 4812"))
    with database.session() as session:
        raw = session.scalars(select(ConversationItem.content)).all()
    assert raw and all(b"4812" not in bytes(blob) for blob in raw)
    other = store.add_items(None, conversation.id, input_items("other"))[0]
    with database.session(write=True) as session:  # move a ciphertext onto another row
        session.execute(
            ConversationItem.__table__.update()
            .where(ConversationItem.id == other.id)
            .values(content=raw[0])
        )
    with pytest.raises(Exception, match="authentication"):
        store.get_item(None, conversation.id, other.id)


def test_an_assistant_item_keeps_its_citations_and_memories_encrypted(
    conversation_store: ConversationStore, database: Database
) -> None:
    citation = {
        "type": "file_citation",
        "index": 10,
        "file_id": "file_1",
        "filename": "reactor-notes.txt",
        "chunk_id": "chunk_7",
        "vector_store_id": "vs_1",
        "number": 1,
        "page": None,
        "headings": ["Cooling"],
        "score": 0.9,  # not kept: only what shows the source again
    }
    reply = {
        "type": "message",
        "role": "assistant",
        "memory_ids": ["mem_a", "mem_b", "mem_a"],
        "content": [
            {"type": "output_text", "text": "Intro."},
            {
                "type": "output_text",
                "text": "It is cooled [1].",
                "annotations": [citation, {"type": "container_file_citation", "x": 1}],
            },
        ],
    }
    store = conversation_store
    conversation = store.create(None, {}, input_items([reply]))
    item = store.items(None, conversation.id)[0].to_openai()
    assert item["content"][0]["text"] == "Intro.\nIt is cooled [1]."
    assert item["content"][0]["annotations"] == [
        {
            "type": "file_citation",
            "index": 17,  # moved past the first part and the newline that joins them
            "file_id": "file_1",
            "filename": "reactor-notes.txt",
            "chunk_id": "chunk_7",
            "vector_store_id": "vs_1",
            "number": 1,
            "headings": ["Cooling"],
        }
    ]
    assert item["memory_ids"] == ["mem_a", "mem_b"]
    with database.session() as session:
        raw = session.scalars(select(ConversationItem.content)).all()
    assert raw and all(b"reactor-notes" not in bytes(b) and b"mem_a" not in bytes(b) for b in raw)
    user_turn = input_items([{"role": "user", "content": "hi", "memory_ids": ["mem_a"]}])[0]
    assert "memory_ids" not in user_turn  # only a reply uses memories
    where = "items[0].content[0].annotations"
    for bad, param in (
        ({"annotations": [{"type": "file_citation"}]}, f"{where}[0].file_id"),
        ({"annotations": [{**citation, "index": -1}]}, f"{where}[0].index"),
        ({"annotations": "x"}, where),
    ):
        part = {"type": "output_text", "text": "t", **bad}
        with pytest.raises(InvalidRequestError) as caught:
            input_items([{"role": "assistant", "content": [part]}], param="items")
        assert caught.value.param == param
    with pytest.raises(InvalidRequestError):
        input_items([{"role": "assistant", "content": "t", "memory_ids": "mem_a"}])


def test_oversized_item_is_413_and_writes_nothing(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    store = ConversationStore(database, ContentCipher.from_settings(settings), max_item_bytes=1000)
    conversation = store.create(None)
    with pytest.raises(PayloadTooLargeError) as caught:
        store.add_items(None, conversation.id, says("fine", "x" * 2000))
    assert caught.value.status_code == 413
    assert store.get(None, conversation.id).items == 0


def test_a_response_and_its_items_are_one_transaction(
    conversation_store: ConversationStore,
) -> None:
    store = conversation_store
    conversation = store.create(None)
    response = {"id": "resp_1", "model": "m", "status": "completed", "output": []}
    with pytest.raises(PayloadTooLargeError):
        store.save_response(
            None, response,
            inputs=[NewItem(message_item("user", "hi"))],
            outputs=[NewItem(message_item("assistant", "y" * (2 << 20)))],
            conversation_id=conversation.id,
        )  # fmt: skip
    assert store.get(None, conversation.id).items == 0
    with pytest.raises(NotFoundError):
        store.get_response(None, "resp_1")


def test_response_chains_follow_previous_response_id(
    conversation_store: ConversationStore,
) -> None:
    store = conversation_store
    for number, previous in ((1, None), (2, "resp_1")):
        store.save_response(
            None, {"id": f"resp_{number}", "model": "m", "status": "completed"},
            inputs=[NewItem(message_item("user", f"q{number}"))],
            outputs=[NewItem(message_item("assistant", f"a{number}"))],
            previous_response_id=previous,
        )  # fmt: skip
    _, chain = store.response_chain(None, "resp_2")
    assert [i.body["content"][0]["text"] for i in chain] == ["q1", "a1", "q2", "a2"]
    assert [i.position for i in chain] == [0, 1, 2, 3]
    page = store.response_input_items(None, "resp_2")
    assert [i.body["content"][0]["text"] for i in page.data] == ["q2"]
    store.delete_response(None, "resp_1")
    _, chain = store.response_chain(None, "resp_2")
    assert [i.body["content"][0]["text"] for i in chain] == ["q2", "a2"]


def test_deleting_a_user_deletes_their_conversations(
    conversation_store: ConversationStore, database: Database
) -> None:
    (alice,) = user_ids(database, "alice")
    store = conversation_store
    conversation = store.create(alice, {}, input_items("hello"))
    store.save_response(
        alice, {"id": "resp_a", "model": "m"}, inputs=[NewItem(message_item("user", "q"))],
        outputs=[], conversation_id=conversation.id,
    )  # fmt: skip
    with database.session(write=True) as session:
        session.execute(delete(User).where(User.id == alice))
    with database.session() as session:
        assert session.scalar(select(text("count(*)")).select_from(ConversationItem)) == 0
        assert session.scalar(select(text("count(*)")).select_from(StoredResponse)) == 0
        assert session.scalar(text("SELECT count(*) FROM conversations")) == 0


def test_rotate_master_reencrypts_items_and_responses(
    settings: Settings, conversation_store: ConversationStore, database: Database
) -> None:
    store = conversation_store
    conversation = store.create(None, {}, says("one", "two"))
    store.save_response(
        None, {"id": "resp_r", "model": "m", "output_text": "three"},
        inputs=[], outputs=[NewItem(message_item("assistant", "three"))],
        conversation_id=conversation.id,
    )  # fmt: skip
    result = rotate_master_key(settings, database)
    assert result.reencrypted["conversation_items.content"] == 3
    assert result.reencrypted["responses.body"] == 1
    rotated = ConversationStore(database, ContentCipher(load_master_key(settings)))
    texts = [i.body["content"][0]["text"] for i in rotated.items(None, conversation.id)]
    assert texts == ["one", "two", "three"]
    assert rotated.get_response(None, "resp_r")["output_text"] == "three"
    with pytest.raises(Exception, match="another master key"):
        store.items(None, conversation.id)  # the old key no longer opens anything


def test_a_database_down_mid_request_is_503_and_writes_nothing(
    conversation_store: ConversationStore, database: Database, request: pytest.FixtureRequest
) -> None:
    if database.is_sqlite:
        pytest.skip("a server that goes down is a PostgreSQL case")
    server = request.getfixturevalue("postgres_server")
    store = conversation_store
    conversation = store.create(None, {}, input_items("kept"))
    name = database.url.database
    server.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
    server.execute(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            store.add_items(None, conversation.id, input_items("lost"))
        assert caught.value.status_code == 503
    finally:
        server.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    texts = [i.body["content"][0]["text"] for i in store.items(None, conversation.id)]
    assert texts == ["kept"]
