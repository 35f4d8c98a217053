"""Knowledge tests' fixtures: a real server on loopback with authentication, two users, a
real database, and the fake kernel of the server tests with word-count embeddings; and for
the file system, settings and an upgraded database on each backend with a `FileSystem` over
the memory tests' `WordEngine` (deterministic bag-of-words embeddings).

`KnowledgeEngine` counts one token per word plus the two special tokens an embedding model
adds, so chunk sizes are predictable; integration tests with the real all-MiniLM and
SmolLM2 live in ``test_knowledge_model.py``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmasos.access.keys import KeyManager
from llmasos.access.users import UserManager
from llmasos.config import Settings, load_settings
from llmasos.kernel.interface import EmbedResult
from llmasos.knowledge.filesystem import FileSystem
from llmasos.knowledge.fstypes import FileOwner
from llmasos.knowledge.stores import KnowledgeBase
from llmasos.models import open_model_store
from llmasos.server.app import create_app
from llmasos.storage import Database, open_database
from tests.memory.conftest import WordEngine
from tests.server.conftest import ServerThread
from tests.storage.conftest import database, settings

__all__ = ["ALICE", "BOB", "database", "settings"]

ALICE = FileOwner("user:1", None)
BOB = FileOwner("user:2", None)

UPLOAD_LIMIT = 256 * 1024


class KnowledgeEngine(WordEngine):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        """Embeddings of texts that say "slowfile" wait until it is set (a test holds a file
        in progress by clearing it)."""
        self.gate.set()

    async def tokenize(self, model: str | None, text: str) -> list[int]:
        return list(range(len(re.findall(r"\w+|[^\w\s]", text)) + 2))

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        if any("slowfile" in text.lower() for text in texts):
            await asyncio.to_thread(self.gate.wait, 30)
        return await super().embed(model, texts)


@dataclass
class KnowledgeServer:
    url: str
    settings: Settings
    database: Database
    knowledge: KnowledgeBase
    engine: KnowledgeEngine
    alice: str
    bob: str
    clients: dict[str, openai.OpenAI] = field(default_factory=dict)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    def openai(self, key: str) -> openai.OpenAI:
        """One client per key, closed when the server fixture ends."""
        if key not in self.clients:
            self.clients[key] = openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)
        return self.clients[key]


def serve_knowledge(
    home: Path,
    open_knowledge: Callable[[Settings, Database, KnowledgeEngine], KnowledgeBase],
) -> Iterator[KnowledgeServer]:
    """A server with authentication, users alice and bob (one key each) and the knowledge
    base ``open_knowledge`` makes."""
    settings = load_settings(home=home, auth=True, max_upload_bytes=UPLOAD_LIMIT)
    database = open_database(settings)
    users = UserManager(database)
    users.create("alice", role="user")
    users.create("bob", role="user")
    keys = KeyManager(database)
    engine = KnowledgeEngine()
    knowledge = open_knowledge(settings, database, engine)
    app = create_app(settings, engine, open_model_store(settings), keys=keys, knowledge=knowledge)
    with ServerThread(app) as url:
        server = KnowledgeServer(
            url,
            settings,
            database,
            knowledge,
            engine,
            keys.create("alice", "laptop").secret,
            keys.create("bob", "laptop").secret,
        )
        yield server
        for client in server.clients.values():
            client.close()
    database.close()


@pytest.fixture(scope="module")
def kb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnowledgeServer]:
    yield from serve_knowledge(tmp_path_factory.mktemp("kb-home"), KnowledgeBase.open)


@pytest.fixture
def alice(kb_server: KnowledgeServer) -> Iterator[openai.OpenAI]:
    """Alice's ``openai`` client; her stores are deleted after the test."""
    client = kb_server.openai(kb_server.alice)
    yield client
    for store in client.vector_stores.list():
        client.vector_stores.delete(store.id)


def wait_for_file(client: httpx.Client, store_id: str, file_id: str) -> dict[str, Any]:
    """Poll a vector store file until it leaves in_progress (at most 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = client.get(f"/v1/vector_stores/{store_id}/files/{file_id}").json()
        if body.get("status") != "in_progress" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


@pytest.fixture
def engine() -> WordEngine:
    return WordEngine()


@pytest.fixture
def fs(settings: Settings, database: Database, engine: WordEngine) -> FileSystem:
    return FileSystem.open(settings, database, engine)
