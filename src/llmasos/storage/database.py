"""The database handle: engine, sessions and the translation of disk failures.

`Database` wraps one SQLAlchemy engine. SQLite (the default, ``$LLMASOS_HOME/llmasos.db``)
is opened in WAL mode with foreign keys on, a busy timeout and ``synchronous=FULL``, so a
committed transaction survives a ``kill -9`` or a power cut; write transactions start with
``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing.
PostgreSQL is used when ``settings.database_url`` names it (driver: psycopg 3). Every
database failure the operator can fix (full disk, unwritable home, unreachable server)
surfaces as one `StorageError`; nothing here knows what the tables mean.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from llmasos.config import Settings
from llmasos.errors import ConfigError, DatabaseUnavailableError, StorageError
from llmasos.storage.claims import WorkClaims

SQLITE_FILENAME = "llmasos.db"
BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "llmasos_sqlite_begin"


def database_url(settings: Settings) -> URL:
    """The SQLAlchemy URL for these settings: ``database_url`` or SQLite in the home."""
    if not settings.database_url:
        return URL.create("sqlite", database=str(settings.home / SQLITE_FILENAME))
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        raise ConfigError(
            f"invalid database_url {settings.database_url!r}: "
            "use e.g. postgresql://user:password@host/dbname or sqlite:////path/llmasos.db"
        ) from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")  # the one driver we ship
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ConfigError("database_url: an in-memory SQLite database would lose everything")
        return url
    raise ConfigError(f"database_url: unsupported database {backend!r}; use sqlite or postgresql")


def display_url(url: URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    return url.render_as_string(hide_password=True)


class Database:
    """One engine and its session factory. Use `session()` for every unit of work."""

    def __init__(self, url: URL, *, pool_size: int = 5, max_overflow: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"pool_timeout": 60}
        if self.is_sqlite:
            _prepare_sqlite_file(Path(url.database or ""))
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            self.engine: Engine = create_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, **kwargs
            )
        except ModuleNotFoundError as error:
            raise StorageError(
                f"no driver for {display_url(url)}: {error.name} is not installed"
            ) from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _configure_sqlite_connection)
            event.listen(self.engine, "begin", _begin_sqlite_transaction)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._claims: WorkClaims | None = None
        self._claims_lock = threading.Lock()

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    @property
    def claims(self) -> WorkClaims:
        """This process's claims on background work in this database (one per handle)."""
        with self._claims_lock:
            if self._claims is None:
                self._claims = WorkClaims(self)
            return self._claims

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        ``write=True`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``), which every
        read-then-write unit of work needs to avoid a lock-upgrade failure under concurrency.
        """
        with translate_storage_errors(self.display_url), self._sessions.begin() as session:
            if self.is_sqlite:
                session.connection(
                    execution_options={_BEGIN_OPTION: "IMMEDIATE" if write else "DEFERRED"}
                )
            yield session

    def close(self) -> None:
        """Free this process's claims and close every pooled connection."""
        if self._claims is not None:
            self._claims.close()
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def translate_storage_errors(where: str) -> Iterator[None]:
    """Turn driver-level failures an operator can fix into one-line `StorageError`s."""
    try:
        yield
    except OperationalError as error:
        if _is_unavailable(error):
            raise DatabaseUnavailableError(
                f"the database is unavailable ({where}): {_first_line(error)}; "
                "nothing was written, retry later"
            ) from error
        raise StorageError(_describe(error, where)) from error
    except OSError as error:
        raise StorageError(_describe_os_error(error, where)) from error


_UNAVAILABLE_TEXTS = (
    "connection refused",
    "connection failed",
    "server closed the connection",
    "terminating connection",
    "not currently accepting connections",
    "the database system is shutting down",
    "the database system is starting up",
    "could not connect",
    "consuming input failed",
)


def _first_line(error: OperationalError) -> str:
    original = error.orig
    text = str(original).strip() if original is not None else str(error)
    return text.splitlines()[0] if text else type(error).__name__


def _is_unavailable(error: OperationalError) -> bool:
    """A lost or refused connection (the server is down), as opposed to a refused write."""
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    if error.connection_invalidated or sqlstate.startswith(("08", "57P")):
        return True
    lowered = _first_line(error).lower()
    return any(text in lowered for text in _UNAVAILABLE_TEXTS)


def _describe(error: OperationalError, where: str) -> str:
    original = error.orig
    text = _first_line(error)
    lowered = text.lower()
    sqlstate = getattr(original, "sqlstate", None) or ""
    if "disk is full" in lowered or "disk full" in lowered or sqlstate == "53100":
        return f"the disk holding the database is full ({where}): {text}; nothing was written"
    if "readonly" in lowered or "read-only" in lowered:
        return f"the database is not writable ({where}): {text}"
    if "unable to open" in lowered:
        return f"cannot open the database ({where}): {text}"
    if "locked" in lowered:
        return f"the database stayed locked by another writer ({where}): {text}"
    return f"database error ({where}): {text}"


def _describe_os_error(error: OSError, where: str) -> str:
    if error.errno == errno.ENOSPC:
        return f"the disk is full ({where}); nothing was written"
    reason = error.strerror or str(error)
    return f"{reason}: {error.filename or where}"


def _prepare_sqlite_file(path: Path) -> None:
    """Create the directory and an owner-only database file, or raise `StorageError`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError as error:
        raise StorageError(
            f"cannot create the database {path}: {_describe_os_error(error, str(path))}"
        ) from None
    if not os.access(path.parent, os.W_OK) or not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(f"the database {path} or its directory is not writable")


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's implicit BEGIN is off).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _begin_sqlite_transaction(connection: Any) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")
