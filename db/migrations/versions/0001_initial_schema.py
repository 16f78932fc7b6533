"""Initial schema: the agents' tables (read-only to the orchestrator) and its own.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 01:28:38.591007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_controls",
        sa.Column("agent_name", sa.String(length=64), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("circuit_state", sa.String(length=16), nullable=False),
        sa.Column("circuit_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_handoff_id", sa.String(length=128), nullable=True),
        sa.Column("silenced_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_name"),
    )
    op.create_table(
        "agent_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("records_processed", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("handoff_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_agent_runs_agent_started", "agent_runs", ["agent_name", "started_at"], unique=False
    )
    op.create_index(
        "ix_agent_runs_agent_status_completed",
        "agent_runs",
        ["agent_name", "status", "completed_at"],
        unique=False,
    )
    op.create_index("ix_agent_runs_handoff_id", "agent_runs", ["handoff_id"], unique=False)

    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("agent_name", sa.String(length=64), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notified_severity", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_alerts_status_agent", "alerts", ["status", "agent_name"], unique=False)
    op.create_index(
        "uq_alerts_open_fingerprint",
        "alerts",
        ["fingerprint"],
        unique=True,
        sqlite_where=sa.text("status <> 'resolved'"),
        postgresql_where=sa.text("status <> 'resolved'"),
    )

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("agent_name", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedup_key"),
    )
    op.create_index("ix_events_created_at", "events", ["created_at"], unique=False)

    op.create_table(
        "handoffs",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("from_state", sa.String(length=64), nullable=False),
        sa.Column("state_entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("to_agent", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("workflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "prospect_id", "from_state", "state_entered_at", name="uq_handoffs_state_entry"
        ),
    )
    op.create_index("ix_handoffs_prospect_id", "handoffs", ["prospect_id"], unique=False)
    op.create_index("ix_handoffs_status_agent", "handoffs", ["status", "to_agent"], unique=False)
    op.create_index("ix_handoffs_updated_at", "handoffs", ["updated_at"], unique=False)
    op.create_index("ix_handoffs_created_at", "handoffs", ["created_at", "id"], unique=False)

    op.create_table(
        "orchestrator_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("agent_name", sa.String(length=64), nullable=True),
        sa.Column("workflow_id", sa.String(length=255), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_orchestrator_actions_created_at", "orchestrator_actions", ["created_at"], unique=False
    )
    op.create_index(
        "ix_orchestrator_actions_prospect_id", "orchestrator_actions", ["prospect_id"], unique=False
    )

    op.create_table(
        "pipeline_reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("report_date", sa.String(length=10), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "report_date", name="uq_reports_kind_date"),
    )
    op.create_table(
        "prospects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_name", sa.String(length=255), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_prospects_created_at", "prospects", ["created_at"], unique=False)
    op.create_index(
        "ix_prospects_live_status",
        "prospects",
        ["status", "id"],
        unique=False,
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )

    op.create_table(
        "record_locks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("agent_name", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prospect_id"),
    )
    op.create_index("ix_record_locks_expires_at", "record_locks", ["expires_at"], unique=False)

    op.create_table(
        "state_violations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_state_violations_kind_state", "state_violations", ["kind", "state"], unique=False
    )
    op.create_index(
        "uq_state_violations_open",
        "state_violations",
        ["prospect_id", "kind"],
        unique=True,
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    op.create_table(
        "activities",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_activities_prospect_id", "activities", ["prospect_id", "created_at"], unique=False
    )
    op.create_index(
        "ix_activities_type_created_at", "activities", ["type", "created_at"], unique=False
    )

    op.create_table(
        "contacts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contacts_prospect_id", "contacts", ["prospect_id"], unique=False)

    op.create_table(
        "outreach_sequences",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "prospect_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["prospect_id"],
            ["prospects.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_outreach_sequences_completed_at", "outreach_sequences", ["completed_at"], unique=False
    )
    op.create_index(
        "ix_outreach_sequences_prospect_id", "outreach_sequences", ["prospect_id"], unique=False
    )
    op.create_index("ix_outreach_sequences_status", "outreach_sequences", ["status"], unique=False)
    _upgrade_outbox()


def _upgrade_outbox() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("sink", sa.String(length=32), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_notifications_status_created", "notifications", ["status", "created_at"], unique=False
    )
    op.create_table(
        "cycle_heartbeats",
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("last_completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mode"),
    )


def downgrade() -> None:
    op.drop_table("cycle_heartbeats")
    op.drop_index("ix_notifications_status_created", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_outreach_sequences_status", table_name="outreach_sequences")
    op.drop_index("ix_outreach_sequences_prospect_id", table_name="outreach_sequences")
    op.drop_index("ix_outreach_sequences_completed_at", table_name="outreach_sequences")

    op.drop_table("outreach_sequences")
    op.drop_index("ix_contacts_prospect_id", table_name="contacts")

    op.drop_table("contacts")
    op.drop_index("ix_activities_type_created_at", table_name="activities")
    op.drop_index("ix_activities_prospect_id", table_name="activities")

    op.drop_table("activities")
    op.drop_index(
        "uq_state_violations_open",
        table_name="state_violations",
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.drop_index("ix_state_violations_kind_state", table_name="state_violations")

    op.drop_table("state_violations")
    op.drop_index("ix_record_locks_expires_at", table_name="record_locks")

    op.drop_table("record_locks")
    op.drop_index(
        "ix_prospects_live_status",
        table_name="prospects",
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.drop_index("ix_prospects_created_at", table_name="prospects")

    op.drop_table("prospects")
    op.drop_table("pipeline_reports")
    op.drop_index("ix_orchestrator_actions_prospect_id", table_name="orchestrator_actions")
    op.drop_index("ix_orchestrator_actions_created_at", table_name="orchestrator_actions")

    op.drop_table("orchestrator_actions")
    op.drop_index("ix_handoffs_created_at", table_name="handoffs")
    op.drop_index("ix_handoffs_updated_at", table_name="handoffs")
    op.drop_index("ix_handoffs_status_agent", table_name="handoffs")
    op.drop_index("ix_handoffs_prospect_id", table_name="handoffs")

    op.drop_table("handoffs")
    op.drop_index("ix_events_created_at", table_name="events")

    op.drop_table("events")
    op.drop_index(
        "uq_alerts_open_fingerprint",
        table_name="alerts",
        sqlite_where=sa.text("status <> 'resolved'"),
        postgresql_where=sa.text("status <> 'resolved'"),
    )
    op.drop_index("ix_alerts_status_agent", table_name="alerts")

    op.drop_table("alerts")
    op.drop_index("ix_agent_runs_handoff_id", table_name="agent_runs")
    op.drop_index("ix_agent_runs_agent_status_completed", table_name="agent_runs")
    op.drop_index("ix_agent_runs_agent_started", table_name="agent_runs")

    op.drop_table("agent_runs")
    op.drop_table("agent_controls")
