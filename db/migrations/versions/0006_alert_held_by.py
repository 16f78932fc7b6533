"""Inhibition: an alert held back because its agent is already known to be in trouble
names what holds it (``alerts.held_by``: the inhibiting alert's fingerprint, or the agent's
pause or open circuit), so it can be counted there and judged again on recovery.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_alerts_held_by"


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("held_by", sa.String(255), nullable=True))
    op.create_index(INDEX, "alerts", ["held_by"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("held_by")
