"""The memory tests' fixtures: settings and an upgraded database on each backend, a
conversation store, and a memory store over an engine whose embeddings are word counts.

`WordEngine` is the fake kernel of the server tests with a deterministic embedder (hashed
bag of words, 64 dimensions): texts that share words are close, equal word bags are
identical. Integration tests with the real all-MiniLM live in ``test_memory_model.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pytest

from llmasos.config import Settings
from llmasos.kernel.interface import EmbedResult
from llmasos.memory import ConversationStore
from llmasos.memory.memories import MemoryOwner, MemoryStore
from llmasos.retrieval.terms import words
from llmasos.storage import ContentCipher, Database
from tests.server.fake_engine import FakeEngineClient
from tests.storage.conftest import database, settings

__all__ = [
    "ALICE",
    "BOB",
    "WordEngine",
    "conversation_store",
    "database",
    "settings",
    "word_vector",
]

DIMS = 64


def word_vector(text: str) -> list[float]:
    vector = np.zeros(DIMS, dtype=np.float32)
    for word in words(text):
        vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % DIMS] += 1.0
    return [float(x) for x in vector]


class WordEngine(FakeEngineClient):
    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    async def embed(self, model: str | None, texts: Sequence[str]) -> EmbedResult:
        self.embedded.extend(texts)
        return EmbedResult(model="words", vectors=[word_vector(t) for t in texts], prompt_tokens=0)


@pytest.fixture
def conversation_store(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> ConversationStore:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    return ConversationStore(database, ContentCipher.from_settings(settings))


@pytest.fixture
def engine() -> WordEngine:
    return WordEngine()


@pytest.fixture
def store(settings: Settings, database: Database, engine: WordEngine) -> MemoryStore:
    return MemoryStore.open(settings, database, engine)


ALICE = MemoryOwner("user:1", None)
BOB = MemoryOwner("user:2", None)
