"""Quotas, their fixed-window counters, usage records and the model price table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_day", sa.BigInteger(), nullable=True),
        sa.Column("tokens_per_month", sa.BigInteger(), nullable=True),
        sa.Column("concurrent_requests", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quotas"),
        sa.UniqueConstraint("subject", name="uq_quotas_subject"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_quotas_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_quotas_user_id", "quotas", ["user_id"])
    op.create_table(
        "quota_counters",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "period", "window_start", name="pk_quota_counters"),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("app", sa.String(64), nullable=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_usage_records_user_id_users", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_usage_records_created_at", "usage_records", ["created_at"])
    op.create_index("ix_usage_records_user_id", "usage_records", ["user_id"])
    op.create_table(
        "model_prices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("prompt_per_1k", sa.Float(), nullable=False),
        sa.Column("completion_per_1k", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_prices"),
        sa.UniqueConstraint("model", name="uq_model_prices_model"),
    )


def downgrade() -> None:
    op.drop_table("model_prices")
    op.drop_index("ix_usage_records_user_id", table_name="usage_records")
    op.drop_index("ix_usage_records_created_at", table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_table("quota_counters")
    op.drop_index("ix_quotas_user_id", table_name="quotas")
    op.drop_table("quotas")
