"""Vector store file batches, and chunk edits that survive re-indexing.

``vector_store_file_batches`` holds a batch's identity and whether it was cancelled; its
files are the ``vector_store_files`` rows whose new ``batch_id`` names it.
``kb_chunks.original_text`` (sealed) keeps the chunker's text of a chunk edited or disabled
by hand, so re-indexing the file can find the chunk again.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_store_file_batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_vector_store_file_batches"),
        sa.ForeignKeyConstraint(
            ["vector_store_id"],
            ["vector_stores.id"],
            name="fk_vector_store_file_batches_vector_store_id_vector_stores",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_vector_store_file_batches_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_vector_store_file_batches_vector_store_id",
        "vector_store_file_batches",
        ["vector_store_id"],
    )
    op.add_column("vector_store_files", sa.Column("batch_id", sa.String(64), nullable=True))
    op.create_index("ix_vector_store_files_batch_id", "vector_store_files", ["batch_id"])
    op.add_column("kb_chunks", sa.Column("original_text", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kb_chunks") as batch:
        batch.drop_column("original_text")
    op.drop_index("ix_vector_store_files_batch_id", table_name="vector_store_files")
    with op.batch_alter_table("vector_store_files") as batch:
        batch.drop_column("batch_id")
    op.drop_index(
        "ix_vector_store_file_batches_vector_store_id", table_name="vector_store_file_batches"
    )
    op.drop_table("vector_store_file_batches")
