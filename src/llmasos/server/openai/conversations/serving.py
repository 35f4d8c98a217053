"""Conversations for the HTTP layer: who owns what, and the store off the event loop.

The owner of every conversation and response is the authenticated user (``user_id``), or
the machine's owner (None) when authentication is off; the store makes another owner's ids
indistinguishable from missing ones (404). The store is opened on first use when the
server was not given a database, so servers that never see a conversation never touch it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError
from llmasos.kernel.interface import EngineClientInterface
from llmasos.memory.conversations import ConversationStore, StoredItem
from llmasos.memory.items import input_items
from llmasos.memory.recall import ConversationIndex
from llmasos.server.context import current_principal
from llmasos.storage import Database, open_database
from llmasos.storage.crypto import ContentCipher

T = TypeVar("T")
logger = logging.getLogger(__name__)
MAX_ITEMS_PER_REQUEST = 20


def current_owner() -> int | None:
    """The user id the current request acts for (None: the local owner, auth off)."""
    principal = current_principal()
    return principal.user_id if principal is not None else None


class ConversationStoreProvider:
    """Opens the database and the cipher once, when first needed; with an engine, also the
    conversations' part of the shared index (recall after compaction), and indexes stored
    turns in the background."""

    def __init__(
        self,
        settings: Settings,
        database: Database | None = None,
        engine: EngineClientInterface | None = None,
    ) -> None:
        self.settings = settings
        self._database = database
        self._engine = engine
        self._store: ConversationStore | None = None
        self._index: ConversationIndex | None = None
        self._lock = threading.Lock()
        self._indexing: set[asyncio.Task[None]] = set()

    def get(self) -> ConversationStore:
        with self._lock:
            if self._store is None:
                database = self._database or open_database(self.settings)
                self._database = database
                self._store = ConversationStore(
                    database, ContentCipher.from_settings(self.settings)
                )
            return self._store

    def index(self) -> ConversationIndex | None:
        """The conversation index (None without an engine to embed with)."""
        if self._engine is None:
            return None
        store = self.get()
        with self._lock:
            if self._index is None:
                self._index = ConversationIndex.open(self.settings, store.database, self._engine)
            return self._index

    def index_later(self, owner: int | None, conversation_id: str, items: list[StoredItem]) -> None:
        """Index a stored turn's items after the reply, off the request's path; a failure is
        logged (recall indexes what is missing when it needs it)."""
        index = self.index()
        if index is None or not items:
            return

        async def run() -> None:
            try:
                await index.index_items(owner, conversation_id, items)
            except Exception as error:  # the turn is stored; only its index entry waits
                logger.warning("indexing conversation %s failed: %s", conversation_id, error)

        task = asyncio.get_running_loop().create_task(run())
        self._indexing.add(task)
        task.add_done_callback(self._indexing.discard)

    async def run(self, work: Callable[[ConversationStore], T]) -> T:
        """Run ``work(store)`` in a worker thread (database calls never block the loop)."""
        return await anyio.to_thread.run_sync(lambda: work(self.get()))


def request_items(items: list[dict[str, Any]] | None, param: str = "items") -> list[dict[str, Any]]:
    if items is not None and len(items) > MAX_ITEMS_PER_REQUEST:
        raise InvalidRequestError(
            f"{param} has {len(items)} entries; at most {MAX_ITEMS_PER_REQUEST} per request",
            param=param,
        )
    return input_items(items or [], param=param)
