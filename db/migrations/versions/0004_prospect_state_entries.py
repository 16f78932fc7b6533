"""An index on when live prospects entered their state: the change feed's range query.

It blocks writes to ``prospects`` while it builds (seconds at a million rows). To avoid even
that on a large table, build it first by hand with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS
ix_prospects_live_state_entered ON prospects (status_changed_at, id) WHERE deleted_at IS
NULL``; this migration then finds it and goes on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_prospects_live_state_entered"
NOT_DELETED = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "prospects",
        ["status_changed_at", "id"],
        sqlite_where=NOT_DELETED,
        postgresql_where=NOT_DELETED,
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="prospects")
