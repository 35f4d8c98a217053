"""Conversations, their items and stored responses (content encrypted at rest).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _owner() -> sa.Column[int]:
    return sa.Column("user_id", sa.Integer(), nullable=True)


def _owner_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def _conversation_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["conversation_id"],
        ["conversations.id"],
        name=f"fk_{table}_conversation_id_conversations",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(64), nullable=False),
        _owner(),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("next_position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        _owner_key("conversations"),
    )
    op.create_index("ix_conversations_user_id", "conversations", ["user_id"])
    op.create_table(
        "conversation_items",
        sa.Column("id", sa.String(64), nullable=False),
        _owner(),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("response_id", sa.String(64), nullable=True),
        sa.Column("direction", sa.String(8), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=True),
        sa.Column("summary_through", sa.Integer(), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversation_items"),
        _owner_key("conversation_items"),
        _conversation_key("conversation_items"),
    )
    op.create_index(
        "ix_conversation_items_conversation_id",
        "conversation_items",
        ["conversation_id", "position"],
    )
    op.create_index("ix_conversation_items_response_id", "conversation_items", ["response_id"])
    op.create_index("ix_conversation_items_user_id", "conversation_items", ["user_id"])
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), nullable=False),
        _owner(),
        sa.Column("conversation_id", sa.String(64), nullable=True),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_responses"),
        _owner_key("responses"),
        _conversation_key("responses"),
    )
    op.create_index("ix_responses_user_id", "responses", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_responses_user_id", table_name="responses")
    op.drop_table("responses")
    op.drop_index("ix_conversation_items_user_id", table_name="conversation_items")
    op.drop_index("ix_conversation_items_response_id", table_name="conversation_items")
    op.drop_index("ix_conversation_items_conversation_id", table_name="conversation_items")
    op.drop_table("conversation_items")
    op.drop_index("ix_conversations_user_id", table_name="conversations")
    op.drop_table("conversations")
