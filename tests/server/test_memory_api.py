"""``/v1/memories``, memory in chat completions and ``/v1/recommendations`` over real HTTP.

The server runs with authentication and a real database; the kernel is the fake engine of
the server tests with word-count embeddings (`tests.memory.conftest.WordEngine`), so what
is checked is the API's contract: shapes, ownership, permissions, errors and injection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import load_settings
from llmasos.errors import NotFoundError
from llmasos.memory.memories import MAX_TEXT_CHARS, MemoryStore
from llmasos.models import open_model_store
from llmasos.sdk import AsyncClient, Client
from llmasos.server.app import create_app
from llmasos.storage import open_database
from tests.memory.conftest import WordEngine
from tests.server.conftest import ServerThread


@dataclass
class MemoryServer:
    url: str
    engine: WordEngine
    alice: str
    bob: str
    alice_app: str
    """Alice's key without the memory scope (an app whose manifest lacks ``memory``)."""

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServer]:
    home: Path = tmp_path_factory.mktemp("memory-home")
    settings = load_settings(home=home, auth=True)
    database = open_database(settings)
    users = UserManager(database)
    users.create("alice", role="user")
    users.create("bob", role="user")
    keys = KeyManager(database)
    engine = WordEngine()
    store = open_model_store(settings)
    memory = MemoryStore.open(settings, database, engine)
    app = create_app(settings, engine, store, keys=keys, memory=memory)
    with ServerThread(app) as url:
        yield MemoryServer(
            url,
            engine,
            keys.create("alice", "laptop").secret,
            keys.create("bob", "laptop").secret,
            keys.create("alice", "app notes", scopes=["chat"]).secret,
        )
    database.close()


@pytest.fixture
def alice(server: MemoryServer) -> Iterator[httpx.Client]:
    with server.client(server.alice) as client:
        client.delete("/v1/memories").raise_for_status()
        client.post("/v1/memories/settings", json={"chat": False}).raise_for_status()
        yield client


@pytest.fixture
def bob(server: MemoryServer) -> Iterator[httpx.Client]:
    with server.client(server.bob) as client:
        yield client


def add(client: httpx.Client, text: str, **fields: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/v1/memories", json={"text": text, **fields})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and len(body["data"]) == 1
    return body["data"][0]  # type: ignore[no-any-return]


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param


def test_add_list_get_edit_forget(alice: httpx.Client) -> None:
    item = add(alice, "Alice is learning Spanish", kind="fact", metadata={"topic": "language"})
    assert item["id"].startswith("mem_") and item["status"] == "created"
    assert {"text", "kind", "source", "metadata", "created_at", "updated_at"} <= set(item)
    assert add(alice, "alice is learning spanish!")["status"] == "existing"
    add(alice, "Alice prefers tea", kind="preference")
    listed = alice.get("/v1/memories").json()
    assert [m["text"] for m in listed["data"]] == ["Alice prefers tea", "Alice is learning Spanish"]
    assert listed["has_more"] is False
    only = alice.get("/v1/memories", params={"metadata": '{"topic": "language"}'}).json()
    assert [m["id"] for m in only["data"]] == [item["id"]]
    assert len(alice.get("/v1/memories", params={"kind": "preference"}).json()["data"]) == 1
    assert alice.get(f"/v1/memories/{item['id']}").json()["text"] == "Alice is learning Spanish"
    edited = alice.patch(f"/v1/memories/{item['id']}", json={"text": "Alice speaks Spanish"})
    assert edited.json()["text"] == "Alice speaks Spanish"
    deleted = alice.delete(f"/v1/memories/{item['id']}").json()
    assert deleted == {"id": item["id"], "object": "memory.deleted", "deleted": True}
    assert_error(alice.get(f"/v1/memories/{item['id']}"), 404)
    assert alice.delete("/v1/memories").json() == {"object": "memory.deleted_all", "deleted": 1}


def test_search_with_filters(alice: httpx.Client) -> None:
    add(alice, "Alice moved to Lisbon in 2024", kind="event", metadata={"city": "lisbon"})
    tea = add(alice, "Alice prefers green tea", kind="preference")
    body = alice.post("/v1/memories/search", json={"query": "green tea", "k": 1}).json()
    assert [m["id"] for m in body["data"]] == [tea["id"]] and body["data"][0]["score"] > 0
    by_meta = alice.post(
        "/v1/memories/search", json={"query": "Alice", "filters": {"city": "lisbon"}}
    ).json()
    assert [m["kind"] for m in by_meta["data"]] == ["event"]
    by_kind = alice.post("/v1/memories/search", json={"query": "Alice", "kind": "preference"})
    assert [m["id"] for m in by_kind.json()["data"]] == [tea["id"]]
    future = alice.post(
        "/v1/memories/search", json={"query": "Alice", "since": "2999-01-01T00:00:00Z"}
    )
    assert future.json()["data"] == []


def test_bad_input(alice: httpx.Client) -> None:
    assert_error(alice.post("/v1/memories", json={"text": "x" * (MAX_TEXT_CHARS + 1)}), 413, "text")
    assert_error(alice.post("/v1/memories", json={"text": "ok", "kind": "gossip"}), 400, "kind")
    assert_error(alice.post("/v1/memories", json={}), 400)
    assert_error(
        alice.post(
            "/v1/memories", json={"text": "a", "messages": [{"role": "user", "content": "b"}]}
        ),
        400,
    )
    assert_error(alice.post("/v1/memories", json={"text": "ok", "colour": 1}), 400, "colour")
    search = "/v1/memories/search"
    assert_error(alice.post(search, json={"query": "a", "filters": {"t": [1]}}), 400, "filters.t")
    assert_error(alice.post(search, json={"query": "a", "filters": {"bad key": 1}}), 400, "filters")
    assert_error(alice.post(search, json={"query": "a", "filters": [1]}), 400, "filters")
    assert_error(alice.post(search, json={"query": "a", "since": "yesterday"}), 400, "since")
    assert_error(alice.post(search, json={"query": "a", "k": 1000}), 400, "k")
    assert_error(alice.post(search, json={"query": ""}), 400, "query")
    assert_error(alice.get("/v1/memories", params={"metadata": "{oops"}), 400, "metadata")
    for memory in ("mem_123456", "mem_x", "12"):
        assert_error(alice.get(f"/v1/memories/{memory}"), 404)
        assert_error(alice.delete(f"/v1/memories/{memory}"), 404)


def test_another_users_memory_is_404(alice: httpx.Client, bob: httpx.Client) -> None:
    secret = add(alice, "Alice's PIN is 4321")
    assert_error(bob.get(f"/v1/memories/{secret['id']}"), 404)
    assert_error(bob.patch(f"/v1/memories/{secret['id']}", json={"text": "mine"}), 404)
    assert_error(bob.delete(f"/v1/memories/{secret['id']}"), 404)
    assert bob.post("/v1/memories/search", json={"query": "PIN"}).json()["data"] == []
    assert secret["id"] not in {m["id"] for m in bob.get("/v1/memories").json()["data"]}
    bob.delete("/v1/memories")
    assert alice.get(f"/v1/memories/{secret['id']}").status_code == 200


def test_memory_needs_the_memory_scope(server: MemoryServer, alice: httpx.Client) -> None:
    add(alice, "Alice's dog is called Rex")
    alice.post("/v1/memories/settings", json={"chat": True}).raise_for_status()
    with server.client(server.alice_app) as app:
        assert_error(app.get("/v1/memories"), 403)
        assert_error(app.get("/v1/recommendations"), 403)
        chat = {"model": "smollm2", "messages": [{"role": "user", "content": "my dog Rex?"}]}
        response = app.post("/v1/chat/completions", json=chat)
        assert response.status_code == 200 and "memory_ids" not in response.json()
        asked = app.post("/v1/chat/completions", json={**chat, "metadata": {"memory": "true"}})
        assert_error(asked, 403)


def test_chat_injects_memories_and_lists_their_ids(
    server: MemoryServer, alice: httpx.Client
) -> None:
    rex = add(alice, "Alice's dog is called Rex")
    add(alice, "Alice works as a nurse")
    question = {"role": "user", "content": "What is my dog called?"}
    chat = {"model": "smollm2", "messages": [{"role": "system", "content": "Be brief."}, question]}
    plain = alice.post("/v1/chat/completions", json=chat).json()
    assert "memory_ids" not in plain  # memory is off by default
    server.engine.reset()
    on = alice.post("/v1/chat/completions", json={**chat, "metadata": {"memory": "true"}})
    assert on.json()["memory_ids"] == [rex["id"]]
    messages = server.engine.requests[-1].messages or []
    assert [m["role"] for m in messages] == ["system", "system", "user"]
    assert rex["id"] in messages[1]["content"] and "Rex" in messages[1]["content"]
    assert "nurse" not in messages[1]["content"]  # unrelated memories stay out

    alice.post("/v1/memories/settings", json={"chat": True}).raise_for_status()
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.alice)
    completion = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Tell me about my dog"}]
    )
    assert (completion.model_extra or {})["memory_ids"] == [rex["id"]]
    off = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Tell me about my dog"}],
        metadata={"memory": "false"},
    )
    assert "memory_ids" not in (off.model_extra or {})
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "my dog?"}], stream=True
        )
    )
    assert all((c.model_extra or {}).get("memory_ids") == [rex["id"]] for c in chunks)
    bad = alice.post("/v1/chat/completions", json={**chat, "metadata": {"memory": "maybe"}})
    assert_error(bad, 400, "metadata.memory")


def test_responses_inject_memories_and_list_their_ids(
    server: MemoryServer, alice: httpx.Client
) -> None:
    cat = add(alice, "Alice's cat is called Miso")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.alice)
    server.engine.reset()
    response = client.responses.create(
        model="smollm2",
        instructions="Be brief.",
        input="What is my cat called?",
        metadata={"memory": "true"},
    )
    assert (response.model_extra or {})["memory_ids"] == [cat["id"]]
    assert response.instructions == "Be brief."  # the caller's instructions, as given
    system = (server.engine.requests[-1].messages or [])[0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.")
    assert cat["id"] in system["content"] and "Miso" in system["content"]
    events = list(
        client.responses.create(
            model="smollm2", input="my cat?", metadata={"memory": "true"}, stream=True
        )
    )
    completed = [e for e in events if e.type == "response.completed"]
    assert (completed[0].response.model_extra or {})["memory_ids"] == [cat["id"]]
    off = client.responses.create(
        model="smollm2", input="What is my cat called?", metadata={"memory": "false"}
    )
    assert "memory_ids" not in (off.model_extra or {})
    with server.client(server.alice_app) as app:
        refused = app.post(
            "/v1/responses",
            json={"model": "smollm2", "input": "my cat?", "metadata": {"memory": "true"}},
        )
        assert_error(refused, 403)


def test_recommendations(alice: httpx.Client, bob: httpx.Client) -> None:
    cold = bob.get("/v1/recommendations").json()
    assert cold["object"] == "list" and cold["cold_start"] is True and cold["data"]
    assert all(r["reason"] and r["type"] in ("service", "app", "action") for r in cold["data"])
    add(alice, "Alice wants to translate a text into a target language every week")
    warm = alice.get("/v1/recommendations", params={"limit": 5}).json()
    assert warm["cold_start"] is False and len(warm["data"]) <= 5
    by_name = {(r["type"], r["name"]): r for r in warm["data"]}
    assert "memory_id" in by_name[("service", "translate")]["detail"]
    assert ("action", "memory.enable_chat") in by_name
    scores = [r["score"] for r in warm["data"]]
    assert scores == sorted(scores, reverse=True)
    assert_error(alice.get("/v1/recommendations", params={"limit": 0}), 400, "limit")


def test_sdk_memories_sync_and_async(server: MemoryServer, alice: httpx.Client) -> None:
    with Client(server.url, api_key=server.alice) as client:
        [added] = client.memories.add("Alice plays the cello", metadata={"topic": "music"})
        assert added.status == "created"
        assert client.memories.add("Alice plays the cello")[0].id == added.id
        assert [m.id for m in client.memories.list(metadata={"topic": "music"})] == [added.id]
        hits = client.memories.search("cello", k=3)
        assert hits[0].id == added.id and hits[0].score is not None
        edited = client.memories.update(added.id, text="Alice plays the viola")
        assert client.memories.get(added.id).text == edited.text == "Alice plays the viola"
        client.memories.delete(added.id)
        with pytest.raises(NotFoundError):
            client.memories.get(added.id)

    async def asynchronous() -> None:
        async with AsyncClient(server.url, api_key=server.alice) as client:
            [added] = await client.memories.add("Alice runs on Sundays", kind="event")
            assert [m.id for m in await client.memories.list(kind="event")] == [added.id]
            assert (await client.memories.search("runs Sundays"))[0].id == added.id
            updated = await client.memories.update(added.id, metadata={"day": "sunday"})
            assert (await client.memories.get(added.id)).metadata == updated.metadata
            await client.memories.use_in_chat(True)
            assert await client.recommendations(limit=3)
            assert await client.memories.clear() == 1
            with pytest.raises(NotFoundError):
                await client.memories.get(added.id)

    asyncio.run(asynchronous())
