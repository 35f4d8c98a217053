"""Alembic migrations of the LLMasOS schema; run them with `llmasos.storage.upgrade_database`."""
