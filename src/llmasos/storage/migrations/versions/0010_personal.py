"""Personal tools: notes, calendar events, reminders, notifications, the mail outbox, and the
results of side-effecting tool calls by idempotency key.

Personal text is sealed with the content cipher (one ``content`` token per row); notes are
indexed in the shared ``retrieval_entries`` table, collection ``notes``.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _owner_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
    ]


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "notes",
        *_owner_columns(),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notes"),
        _user_fk("notes"),
    )
    op.create_index("ix_notes_owner", "notes", ["owner", "updated_at"])
    op.create_table(
        "calendar_events",
        *_owner_columns(),
        sa.Column("uid", sa.String(255), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_events"),
        sa.UniqueConstraint("owner", "uid", name="uq_calendar_events_owner"),
        _user_fk("calendar_events"),
    )
    op.create_index("ix_calendar_events_owner_start", "calendar_events", ["owner", "start_at"])
    op.create_table(
        "reminders",
        *_owner_columns(),
        sa.Column("event_id", sa.Integer(), nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reminders"),
        _user_fk("reminders"),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["calendar_events.id"],
            name="fk_reminders_event_id_calendar_events",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("status IN ('pending', 'fired')", name="ck_reminders_status"),
    )
    op.create_index("ix_reminders_owner", "reminders", ["owner", "due_at"])
    op.create_index("ix_reminders_status_due", "reminders", ["status", "due_at"])
    op.create_table(
        "notifications",
        *_owner_columns(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source_ref", sa.String(64), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_status", sa.String(16), nullable=True),
        sa.Column("webhook_attempts", sa.Integer(), nullable=False),
        sa.Column("webhook_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
        _user_fk("notifications"),
    )
    op.create_index("ix_notifications_owner", "notifications", ["owner", "id"])
    op.create_index("ix_notifications_webhook_status", "notifications", ["webhook_status"])
    op.create_table(
        "notification_settings",
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("webhook_url", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner", name="pk_notification_settings"),
        _user_fk("notification_settings"),
    )
    op.create_table(
        "outbox",
        *_owner_columns(),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.String(1000), nullable=True),
        sa.Column("message_id", sa.String(255), nullable=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_outbox_owner"),
        _user_fk("outbox"),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed')", name="ck_outbox_status"),
    )
    op.create_index("ix_outbox_owner", "outbox", ["owner", "id"])
    op.create_table(
        "tool_calls",
        *_owner_columns(),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("result", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tool_calls"),
        sa.UniqueConstraint("owner", "idempotency_key", name="uq_tool_calls_owner"),
        _user_fk("tool_calls"),
    )


def downgrade() -> None:
    for table in (
        "tool_calls",
        "outbox",
        "notification_settings",
        "notifications",
        "reminders",
        "calendar_events",
        "notes",
    ):
        op.drop_table(table)
