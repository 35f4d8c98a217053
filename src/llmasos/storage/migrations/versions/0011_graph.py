"""Knowledge graph: entities, relations citing chunks, extracted chunks, builds.

Entity names and predicates are sealed with the content cipher; ``name_key`` is a keyed
hash of the normalized name. Everything cascades from the vector store, relations and
extraction marks also from the chunk they cite.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    other, _ = target.split(".")
    return sa.ForeignKeyConstraint(
        [column], [target], name=f"fk_{table}_{column}_{other}", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "kg_entities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.LargeBinary(), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("mentions", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kg_entities"),
        sa.UniqueConstraint("vector_store_id", "name_key", name="uq_kg_entities_vector_store_id"),
        _fk("kg_entities", "vector_store_id", "vector_stores.id"),
        _fk("kg_entities", "user_id", "users.id"),
    )
    op.create_table(
        "kg_relations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("predicate", sa.LargeBinary(), nullable=False),
        sa.Column("object_id", sa.Integer(), nullable=False),
        sa.Column("chunk_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_kg_relations"),
        _fk("kg_relations", "vector_store_id", "vector_stores.id"),
        _fk("kg_relations", "user_id", "users.id"),
        _fk("kg_relations", "subject_id", "kg_entities.id"),
        _fk("kg_relations", "object_id", "kg_entities.id"),
        _fk("kg_relations", "chunk_id", "kb_chunks.id"),
    )
    for column in ("vector_store_id", "chunk_id", "subject_id", "object_id"):
        op.create_index(f"ix_kg_relations_{column}", "kg_relations", [column])
    op.create_table(
        "kg_extractions",
        sa.Column("chunk_id", sa.Integer(), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("triples", sa.Integer(), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chunk_id", name="pk_kg_extractions"),
        _fk("kg_extractions", "chunk_id", "kb_chunks.id"),
        _fk("kg_extractions", "vector_store_id", "vector_stores.id"),
    )
    op.create_index("ix_kg_extractions_vector_store_id", "kg_extractions", ["vector_store_id"])
    op.create_table(
        "kg_builds",
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("triples_added", sa.Integer(), nullable=False),
        sa.Column("files_in_progress", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(255), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("vector_store_id", name="pk_kg_builds"),
        _fk("kg_builds", "vector_store_id", "vector_stores.id"),
        _fk("kg_builds", "user_id", "users.id"),
        sa.CheckConstraint(
            "status IN ('in_progress', 'completed', 'failed')", name="ck_kg_builds_status"
        ),
    )


def downgrade() -> None:
    op.drop_table("kg_builds")
    op.drop_index("ix_kg_extractions_vector_store_id", table_name="kg_extractions")
    op.drop_table("kg_extractions")
    for column in ("object_id", "subject_id", "chunk_id", "vector_store_id"):
        op.drop_index(f"ix_kg_relations_{column}", table_name="kg_relations")
    op.drop_table("kg_relations")
    op.drop_table("kg_entities")
