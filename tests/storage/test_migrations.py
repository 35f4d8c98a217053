"""Migrations build the schema from nothing, agree with the ORM and are idempotent."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from llmasos.config import Settings
from llmasos.errors import StorageError
from llmasos.storage import (
    Database,
    current_revision,
    database_url,
    head_revision,
    open_database,
    upgrade_database,
)
from llmasos.storage.migrate import MIGRATIONS_DIR
from llmasos.storage.schema import Base

TABLES = {"alembic_version", "users", "api_keys", "audit_events"}


def test_upgrade_creates_schema_from_empty(settings: Settings) -> None:
    with open_database(settings, upgrade=False) as database:
        assert current_revision(database) is None
        assert upgrade_database(database) == head_revision()
        assert current_revision(database) == head_revision()
        assert set(inspect(database.engine).get_table_names()) >= TABLES


def test_upgrade_is_idempotent(database: Database) -> None:
    with database.session(write=True) as session:
        session.execute(text("INSERT INTO audit_events (created_at, action, outcome) "
                             "VALUES (CURRENT_TIMESTAMP, 'probe', 'ok')"))  # fmt: skip
    for _ in range(3):
        assert upgrade_database(database) == head_revision()
    with database.session() as session:
        assert session.scalar(text("SELECT count(*) FROM audit_events")) == 1
        assert session.scalar(text("SELECT count(*) FROM alembic_version")) == 1


def test_migrations_match_the_orm(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_migration_files_are_named_and_ordered() -> None:
    names = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
    assert names[0] == "0001_users_and_keys.py"
    assert [n[:4] for n in names] == [f"{i:04d}" for i in range(1, len(names) + 1)]
    assert head_revision() == names[-1][:4]


def test_newer_schema_is_refused(database: Database) -> None:
    with database.session(write=True) as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(StorageError, match="newer than this LLMasOS"):
        upgrade_database(database)


def test_default_is_sqlite_in_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    assert database_url(settings).database == str(tmp_path / "home" / "llmasos.db")
    upgrade_database(settings)
    assert (tmp_path / "home" / "llmasos.db").stat().st_mode & 0o077 == 0
