"""Agent presence: when each HTTP agent's endpoint last answered (``agent_endpoint_answers``,
one row per agent, written by the HTTP transport's activity), and ``handoffs.no_worker``: the
handoff was begun while no worker polled its agent's task queue.

The column is nullable without a default, so adding it rewrites nothing on either database.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_endpoint_answers",
        sa.Column("agent_name", sa.String(64), primary_key=True),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
    )
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("no_worker", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_column("no_worker")
    op.drop_table("agent_endpoint_answers")
