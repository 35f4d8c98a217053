"""Workflow runs: a lease per run, so that several servers on one database execute a run
once; and sealed inputs and outputs of runs and steps (content cipher tokens of their JSON).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflow_runs", sa.Column("lease_owner", sa.String(64), nullable=True))
    op.add_column(
        "workflow_runs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True)
    )
    for table in ("workflow_runs", "workflow_steps"):
        op.add_column(table, sa.Column("sealed_inputs", sa.LargeBinary(), nullable=True))
        op.add_column(table, sa.Column("sealed_output", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_column("sealed_output")
        batch.drop_column("sealed_inputs")
    with op.batch_alter_table("workflow_runs") as batch:
        batch.drop_column("sealed_output")
        batch.drop_column("sealed_inputs")
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
