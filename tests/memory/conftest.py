"""The memory tests' fixtures: settings, an upgraded database on each backend, a store."""

from __future__ import annotations

import pytest

from llmasos.config import Settings
from llmasos.memory import ConversationStore
from llmasos.storage import ContentCipher, Database
from tests.storage.conftest import database, settings

__all__ = ["conversation_store", "database", "settings"]


@pytest.fixture
def conversation_store(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> ConversationStore:
    monkeypatch.delenv("LLMASOS_SECRET_KEY", raising=False)
    return ConversationStore(database, ContentCipher.from_settings(settings))
