"""Run the Alembic migrations that live inside the package, programmatically, and open
databases migrated.

`open_database` opens the database the settings name and brings it to the newest schema.
`upgrade_database` brings a database (empty or older) to the newest revision in one
transaction and is a no-op when it is already there, so every process may call it at start.
A database written by a newer LLMasOS (an unknown revision) is refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from llmasos.config import Settings
from llmasos.errors import StorageError
from llmasos.storage.database import Database, database_url, translate_storage_errors

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    """The newest revision this LLMasOS knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(database: Database) -> str | None:
    """The revision the database is at; None for an empty database."""
    with translate_storage_errors(database.display_url), database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_database(target: Database | Settings) -> str:
    """Migrate to the newest revision; return it. Idempotent and all-or-nothing."""
    if isinstance(target, Settings):
        with Database(database_url(target)) as database:
            return upgrade_database(database)
    database = target
    head = head_revision()
    current = current_revision(database)
    if current == head:
        return head
    known = {
        script.revision
        for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
    }
    if current is not None and current not in known:
        raise StorageError(
            f"the database {database.display_url} is at schema revision {current}, newer than "
            f"this LLMasOS knows ({head}); upgrade LLMasOS or restore an older backup"
        )
    config = _alembic_config()
    with translate_storage_errors(database.display_url), database.engine.connect() as connection:
        connection = connection.execution_options(llmasos_sqlite_begin="IMMEDIATE")
        with connection.begin():
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            except CommandError as error:
                raise StorageError(f"migrating {database.display_url} failed: {error}") from None
    return head


def open_database(settings: Settings, *, upgrade: bool = True) -> Database:
    """Open the database the settings name and, by default, migrate it to the newest schema."""
    database = Database(database_url(settings))
    if upgrade:
        try:
            upgrade_database(database)
        except BaseException:
            database.close()
            raise
    return database
