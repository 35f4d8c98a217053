"""The semantic file system: per-user files, their versions, indexed chunks, summaries and
share links.

A file row is one file's identity (it keeps its history across moves); each write, move,
delete and rollback adds a version row naming the content by digest (the bytes live once in
the content-addressed blob directory). Chunk rows are the searchable texts of each file's
current version only; their entries in ``retrieval_entries`` (collection ``fs``) change in
the same transaction as the version.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "fs_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("head", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fs_files"),
        _user_fk("fs_files"),
    )
    op.create_index("ix_fs_files_owner", "fs_files", ["owner", "path"])
    op.create_index(
        "uq_fs_files_live",
        "fs_files",
        ["owner", "path"],
        unique=True,
        sqlite_where=sa.text("deleted = 0"),
        postgresql_where=sa.text("NOT deleted"),
    )
    op.create_index("ix_fs_files_user_id", "fs_files", ["user_id"])
    op.create_table(
        "fs_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fs_versions"),
        sa.UniqueConstraint("file_id", "number", name="uq_fs_versions_file_id"),
        sa.ForeignKeyConstraint(
            ["file_id"], ["fs_files.id"], name="fk_fs_versions_file_id_fs_files", ondelete="CASCADE"
        ),
        sa.CheckConstraint(
            "operation IN ('write', 'move', 'delete', 'rollback')", name="ck_fs_versions_operation"
        ),
    )
    op.create_index("ix_fs_versions_digest", "fs_versions", ["digest"])
    op.create_table(
        "fs_chunks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.LargeBinary(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_fs_chunks"),
        sa.ForeignKeyConstraint(
            ["file_id"], ["fs_files.id"], name="fk_fs_chunks_file_id_fs_files", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_fs_chunks_file_id", "fs_chunks", ["file_id"])
    op.create_table(
        "fs_summaries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(80), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.LargeBinary(), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fs_summaries"),
        sa.UniqueConstraint("owner", "digest", name="uq_fs_summaries_owner"),
        _user_fk("fs_summaries"),
    )
    op.create_table(
        "fs_shares",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fs_shares"),
        sa.UniqueConstraint("token_hash", name="uq_fs_shares_token_hash"),
        sa.ForeignKeyConstraint(
            ["file_id"], ["fs_files.id"], name="fk_fs_shares_file_id_fs_files", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_fs_shares_file_id", "fs_shares", ["file_id"])


def downgrade() -> None:
    op.drop_index("ix_fs_shares_file_id", table_name="fs_shares")
    op.drop_table("fs_shares")
    op.drop_table("fs_summaries")
    op.drop_index("ix_fs_chunks_file_id", table_name="fs_chunks")
    op.drop_table("fs_chunks")
    op.drop_index("ix_fs_versions_digest", table_name="fs_versions")
    op.drop_table("fs_versions")
    op.drop_index("ix_fs_files_user_id", table_name="fs_files")
    op.drop_index("uq_fs_files_live", table_name="fs_files")
    op.drop_index("ix_fs_files_owner", table_name="fs_files")
    op.drop_table("fs_files")
