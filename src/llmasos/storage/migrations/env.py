"""Alembic's entry point, run only through `llmasos.storage.migrate`.

The caller passes an open connection, already inside a transaction, in
``config.attributes["connection"]``; all pending revisions run in that one transaction, so an
upgrade applies completely or not at all (SQLite and PostgreSQL both have transactional DDL).
On PostgreSQL an advisory lock serialises several servers upgrading the same database.
"""

from __future__ import annotations

from alembic import context

from llmasos.storage.schema import Base

UPGRADE_LOCK_ID = 0x6C6C6D6F73  # "llmos": any constant shared by every LLMasOS process

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run LLMasOS migrations with llmasos.storage.upgrade_database()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK_ID})")
    context.run_migrations()
