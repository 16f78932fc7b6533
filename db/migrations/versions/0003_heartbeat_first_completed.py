"""Heartbeats remember when each cycle mode first completed.

The watchdog needs it when the monitor has never completed: other cycles running for longer
than the watchdog's limit without a single monitor cycle is the same failure as a monitor that
stopped, and without a start to measure from it went unnoticed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "cycle_heartbeats",
        sa.Column("first_completed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("UPDATE cycle_heartbeats SET first_completed_at = last_completed_at")
    with op.batch_alter_table("cycle_heartbeats") as batch:
        batch.alter_column(
            "first_completed_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("cycle_heartbeats") as batch:
        batch.drop_column("first_completed_at")
