"""Persistence: one SQLAlchemy database (SQLite by default, PostgreSQL at scale).

`Database` owns the engine and hands out transactional sessions; `open_database` opens the
database the settings name, migrated; `upgrade_database` brings the schema to the newest
Alembic revision; `backup_database` / `restore_database` make and load consistent online
copies; `ContentCipher` encrypts user content at rest. The ORM tables live in
`llmasos.storage.schema`; nothing here knows about users or HTTP beyond those tables.

May import: config, errors, types — nothing above it.
"""

from llmasos.storage.backup import backup_database, restore_database
from llmasos.storage.crypto import ContentCipher, load_master_key
from llmasos.storage.database import Database, database_url
from llmasos.storage.migrate import current_revision, head_revision, open_database, upgrade_database

__all__ = [
    "ContentCipher",
    "Database",
    "backup_database",
    "current_revision",
    "database_url",
    "head_revision",
    "load_master_key",
    "open_database",
    "restore_database",
    "upgrade_database",
]
