"""Workflow steps: what each node's tokens cost (``workflow_steps.cost``), by the price
table when the node finished; None when its model has no price. Steps recorded before this
revision without tokens cost 0; those with tokens stay None (their price then is unknown).

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workflow_steps", sa.Column("cost", sa.Float(), nullable=True))
    op.execute(
        "UPDATE workflow_steps SET cost = 0 WHERE prompt_tokens = 0 AND completion_tokens = 0"
    )


def downgrade() -> None:
    with op.batch_alter_table("workflow_steps") as batch:
        batch.drop_column("cost")
