"""Conversation items in the shared hybrid index: the integer reference of each indexed item.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversation_search",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("conversation_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_search"),
        sa.UniqueConstraint("item_id", name="uq_conversation_search_item_id"),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["conversation_items.id"],
            name="fk_conversation_search_item_id_conversation_items",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_conversation_search_conversation_id_conversations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name="fk_conversation_search_user_id_users",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_conversation_search_conversation_id", "conversation_search", ["conversation_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversation_search_conversation_id", table_name="conversation_search")
    op.drop_table("conversation_search")
    op.execute("DELETE FROM retrieval_entries WHERE collection = 'conversation'")
    op.execute("DELETE FROM retrieval_namespaces WHERE collection = 'conversation'")
