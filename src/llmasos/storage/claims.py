"""Claims on background work, so that several servers on one database never run one piece
of work twice.

A server that runs something left in progress in the database (an agent task, the indexing
of a file, a graph build, a webhook delivery) first claims it: `WorkClaims.claim(kind, item)`
is True when no live process holds that claim, and the claim is this process's until
`release`. On PostgreSQL a claim is a session-level advisory lock
(``pg_try_advisory_lock``) held on one connection the process keeps for its claims: when the
process ends, however it ends, PostgreSQL closes that connection and every claim it held is
free again, so the next server that looks (at its start) takes the work over. There is no
lease to renew and no owner column: liveness is the connection's.

On SQLite (one server per database file) the claims are a set in this process. A claim is
not re-entrant: a second `claim` of what this process already holds is False.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

if TYPE_CHECKING:
    from llmasos.storage.database import Database

logger = logging.getLogger(__name__)


def claim_key(kind: str, item: str) -> int:
    """The signed 64-bit advisory lock key of one piece of work."""
    digest = hashlib.blake2b(f"llmasos:{kind}:{item}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class WorkClaims:
    """The claims this process holds on background work (thread-safe)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._connection: Connection | None = None

    def claim(self, kind: str, item: str) -> bool:
        """Take the claim on ``item`` of ``kind`` unless a live process holds it."""
        key = claim_key(kind, item)
        with self._lock:
            if key in self._held:
                return False
            if not self.database.is_sqlite and not self._try_lock(key):
                return False
            self._held.add(key)
            return True

    def release(self, kind: str, item: str) -> None:
        """Give the claim back (a claim not held is ignored)."""
        key = claim_key(kind, item)
        with self._lock:
            if key not in self._held:
                return
            self._held.discard(key)
            if self.database.is_sqlite or self._connection is None:
                return
            try:
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            except Exception:  # the connection is gone, and the lock with it
                logger.warning("the claims connection was lost; reconnecting on next claim")
                self._drop_connection()

    def close(self) -> None:
        """Free every claim (closing the connection frees them on PostgreSQL)."""
        with self._lock:
            self._held.clear()
            self._drop_connection()

    def _try_lock(self, key: int) -> bool:
        try:
            return self._try(self._connect(), key)
        except Exception:  # a lost connection: once more on a new one
            self._drop_connection()
            return self._try(self._connect(), key)

    @staticmethod
    def _try(connection: Connection, key: int) -> bool:
        taken = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
        return bool(taken.scalar())

    def _connect(self) -> Connection:
        """The claims connection; a new one first takes back what this process held (the
        old one's end freed them), unless another process took them meanwhile."""
        if self._connection is None:
            connection = self.database.engine.connect()
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            for key in list(self._held):
                if not self._try(connection, key):
                    self._held.discard(key)
                    logger.warning("a claim was lost with its connection; another server has it")
            self._connection = connection
        return self._connection

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.debug("closing the claims connection failed", exc_info=True)
