"""Knowledge bases: uploaded files, vector stores, the files attached to them, and chunks.

A chunk's text is sealed with the content cipher; its index entry (blinded terms and the
embedding) lives in the shared ``retrieval_entries`` table, collection ``knowledge``.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "kb_files",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_files"),
        _user_fk("kb_files"),
    )
    op.create_index("ix_kb_files_user_id", "kb_files", ["user_id", "created_at"])
    op.create_index("ix_kb_files_digest", "kb_files", ["digest"])
    op.create_table(
        "vector_stores",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("max_chunk_tokens", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_active_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vector_stores"),
        _user_fk("vector_stores"),
    )
    op.create_index("ix_vector_stores_user_id", "vector_stores", ["user_id", "created_at"])
    op.create_table(
        "vector_store_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("max_chunk_tokens", sa.Integer(), nullable=False),
        sa.Column("chunk_overlap_tokens", sa.Integer(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("usage_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vector_store_files"),
        sa.UniqueConstraint(
            "vector_store_id", "file_id", name="uq_vector_store_files_vector_store_id"
        ),
        sa.ForeignKeyConstraint(
            ["vector_store_id"],
            ["vector_stores.id"],
            name="fk_vector_store_files_vector_store_id_vector_stores",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["kb_files.id"],
            name="fk_vector_store_files_file_id_kb_files",
            ondelete="CASCADE",
        ),
        _user_fk("vector_store_files"),
        sa.CheckConstraint(
            "status IN ('in_progress', 'completed', 'failed', 'cancelled')",
            name="ck_vector_store_files_status",
        ),
    )
    op.create_index("ix_vector_store_files_file_id", "vector_store_files", ["file_id"])
    op.create_index("ix_vector_store_files_status", "vector_store_files", ["status"])
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("store_file_id", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.LargeBinary(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("headings", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kb_chunks"),
        sa.ForeignKeyConstraint(
            ["store_file_id"],
            ["vector_store_files.id"],
            name="fk_kb_chunks_store_file_id_vector_store_files",
            ondelete="CASCADE",
        ),
        _user_fk("kb_chunks"),
    )
    op.create_index("ix_kb_chunks_store_file_id", "kb_chunks", ["store_file_id", "position"])
    op.create_index("ix_kb_chunks_vector_store_id", "kb_chunks", ["vector_store_id"])


def downgrade() -> None:
    op.drop_index("ix_kb_chunks_vector_store_id", table_name="kb_chunks")
    op.drop_index("ix_kb_chunks_store_file_id", table_name="kb_chunks")
    op.drop_table("kb_chunks")
    op.drop_index("ix_vector_store_files_status", table_name="vector_store_files")
    op.drop_index("ix_vector_store_files_file_id", table_name="vector_store_files")
    op.drop_table("vector_store_files")
    op.drop_index("ix_vector_stores_user_id", table_name="vector_stores")
    op.drop_table("vector_stores")
    op.drop_index("ix_kb_files_digest", table_name="kb_files")
    op.drop_index("ix_kb_files_user_id", table_name="kb_files")
    op.drop_table("kb_files")
