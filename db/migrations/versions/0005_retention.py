"""Retention: the indexes housekeeping's batched deletes seek on, and ``retention_marks``.

Each index blocks writes to its table while it builds; on a large ``handoffs`` table build it
first by hand with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_handoffs_finished_at ON
handoffs (finished_at)``; this migration then finds it and goes on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_handoffs_finished_at", "handoffs", ["finished_at"]),
    ("ix_alerts_resolved_at", "alerts", ["resolved_at"]),
    ("ix_notifications_alert_id", "notifications", ["alert_id"]),
    ("ix_pipeline_reports_created_at", "pipeline_reports", ["created_at"]),
    ("ix_state_violations_resolved_at", "state_violations", ["resolved_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)
    op.create_table(
        "retention_marks",
        sa.Column("table_name", sa.String(length=64), primary_key=True),
        sa.Column("pruned_through", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retention_marks")
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
