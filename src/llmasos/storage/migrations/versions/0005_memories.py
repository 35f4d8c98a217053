"""Long-term memory: the shared retrieval index, memory items and per-owner memory settings.

The full-text and vector indexes over ``retrieval_entries`` are derived data: the retrieval
layer creates and fills them at start (SQLite FTS5 table, PostgreSQL GIN index), so they are
not part of the migrated schema.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retrieval_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("collection", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("terms_key", sa.String(8), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_retrieval_entries"),
        sa.UniqueConstraint("collection", "ref_id", name="uq_retrieval_entries_collection"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_retrieval_entries_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_retrieval_entries_namespace",
        "retrieval_entries",
        ["collection", "namespace", "created_at"],
    )
    op.create_index("ix_retrieval_entries_user_id", "retrieval_entries", ["user_id"])
    op.create_table(
        "retrieval_namespaces",
        sa.Column("collection", sa.String(32), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("max_entry_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("collection", "namespace", name="pk_retrieval_namespaces"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_retrieval_namespaces_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "memories",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_ref", sa.String(128), nullable=True),
        sa.Column("text", sa.LargeBinary(), nullable=False),
        sa.Column("text_key", sa.String(64), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_memories"),
        sa.UniqueConstraint("owner", "text_key", name="uq_memories_owner"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_memories_user_id_users", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "kind IN ('fact', 'preference', 'event', 'document_note')", name="ck_memories_kind"
        ),
        sa.CheckConstraint("source IN ('conversation', 'app', 'user')", name="ck_memories_source"),
    )
    op.create_index("ix_memories_owner_created_at", "memories", ["owner", "created_at"])
    op.create_index("ix_memories_user_id", "memories", ["user_id"])
    op.create_table(
        "memory_settings",
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("chat_enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_memory_settings"),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_memory_settings_user_id_users",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("memory_settings")
    op.drop_index("ix_memories_user_id", table_name="memories")
    op.drop_index("ix_memories_owner_created_at", table_name="memories")
    op.drop_table("memories")
    op.drop_table("retrieval_namespaces")
    op.drop_index("ix_retrieval_entries_user_id", table_name="retrieval_entries")
    op.drop_index("ix_retrieval_entries_namespace", table_name="retrieval_entries")
    op.drop_table("retrieval_entries")
