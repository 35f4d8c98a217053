"""The database handle: SQLite pragmas, URLs, foreign keys, and faults as clear errors."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from llmasos.config import Settings
from llmasos.errors import ConfigError, StorageError
from llmasos.storage import Database, database_url, open_database


def test_sqlite_connections_are_durable_and_strict(tmp_path: Path) -> None:
    with open_database(Settings(home=tmp_path)) as database, database.session() as session:
        pragma = lambda name: session.execute(text(f"PRAGMA {name}")).scalar()  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") == 30_000


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.session(write=True) as session:
        session.execute(
            text(
                "INSERT INTO api_keys (key_id, user_id, name, secret_hash, scopes, models, "
                "created_at) VALUES ('k', 12345, 'n', 'h', '[]', '[]', CURRENT_TIMESTAMP)"
            )
        )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db/x", "postgresql+psycopg"),
        ("postgresql://u@db/x", "postgresql+psycopg"),
        ("postgresql+psycopg2://u@db/x", "postgresql+psycopg"),
        ("sqlite:////tmp/x.db", "sqlite"),
    ],
)
def test_database_urls_are_normalised(given: str, expected: str, tmp_path: Path) -> None:
    url = database_url(Settings(home=tmp_path, database_url=given))
    assert url.drivername == expected


@pytest.mark.parametrize("given", ["sqlite://", "sqlite:///:memory:", "mysql://u@h/x", "::"])
def test_bad_database_urls_are_refused(given: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="database_url"):
        database_url(Settings(home=tmp_path, database_url=given))


def test_unwritable_home_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot create the database") as caught:
        open_database(Settings(home=blocker / "home"))
    assert str(blocker) in str(caught.value)


def test_no_space_for_a_new_database_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "open", full_disk)
    with pytest.raises(StorageError, match="disk is full"):
        open_database(Settings(home=tmp_path / "home"))


def test_full_disk_during_a_write_is_a_storage_error(tmp_path: Path) -> None:
    """SQLite's own SQLITE_FULL (a page limit stands in for the disk) keeps committed rows."""
    with open_database(Settings(home=tmp_path)) as database:
        with database.session(write=True) as session:
            session.execute(text("INSERT INTO audit_events (created_at, action, outcome) "
                                 "VALUES (CURRENT_TIMESTAMP, 'kept', 'ok')"))  # fmt: skip
            pages = session.execute(text("PRAGMA page_count")).scalar()

        @event.listens_for(database.engine, "connect")
        def _limit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

        database.engine.dispose()
        with pytest.raises(StorageError, match="disk holding the database is full"):  # noqa: SIM117
            with database.session(write=True) as session:
                session.execute(
                    text(
                        "INSERT INTO audit_events (created_at, action, outcome, detail) "
                        "VALUES (CURRENT_TIMESTAMP, 'big', 'ok', :detail)"
                    ),
                    {"detail": "x" * 1_000_000},
                )
        event.remove(database.engine, "connect", _limit)
        database.engine.dispose()
        with database.session() as session:
            actions = session.execute(text("SELECT action FROM audit_events")).scalars().all()
        assert actions == ["kept"]


def test_unreachable_postgresql_is_a_storage_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:1"):
        open_database(settings)
