"""Tables. The first six belong to the agents: the orchestrator only reads them (and releases
stale ``record_locks``). The rest are the orchestrator's own.

Indexes follow the queries the cycles run; see the comment on each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from db.types import UTCDateTime

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
Id = BigInteger().with_variant(Integer(), "sqlite")
NOT_DELETED = text("deleted_at IS NULL")
UNRESOLVED = text("status <> 'resolved'")


class Base(AsyncAttrs, DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


# --- agent-owned -------------------------------------------------------------------------


class Prospect(Base):
    __tablename__ = "prospects"
    __table_args__ = (
        # pipeline counts and the handoff finder: live prospects by state, keyset on id
        Index(
            "ix_prospects_live_status",
            "status",
            "id",
            sqlite_where=NOT_DELETED,
            postgresql_where=NOT_DELETED,
        ),
        Index("ix_prospects_created_at", "created_at"),
        # the change feed: live state entries since its cursor, in order
        Index(
            "ix_prospects_live_state_entered",
            "status_changed_at",
            "id",
            sqlite_where=NOT_DELETED,
            postgresql_where=NOT_DELETED,
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    company_name: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str | None] = mapped_column(String(8))
    score: Mapped[float | None]
    status_changed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_prospect_id", "prospect_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    prospect_id: Mapped[int] = mapped_column(Id, ForeignKey("prospects.id"))
    name: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
    title: Mapped[str | None] = mapped_column(String(255))


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_type_created_at", "type", "created_at"),
        Index("ix_activities_prospect_id", "prospect_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    prospect_id: Mapped[int] = mapped_column(Id, ForeignKey("prospects.id"))
    type: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class OutreachSequence(Base):
    __tablename__ = "outreach_sequences"
    __table_args__ = (
        Index("ix_outreach_sequences_status", "status"),
        Index("ix_outreach_sequences_completed_at", "completed_at"),
        Index("ix_outreach_sequences_prospect_id", "prospect_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    prospect_id: Mapped[int] = mapped_column(Id, ForeignKey("prospects.id"))
    status: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]


class AgentRun(Base):
    __tablename__ = "agent_runs"
    __table_args__ = (
        # the health window: runs of one agent since a time
        Index("ix_agent_runs_agent_started", "agent_name", "started_at"),
        # the latest success / failure of one agent, one index seek each
        Index("ix_agent_runs_agent_status_completed", "agent_name", "status", "completed_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    agent_name: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    records_processed: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    handoff_id: Mapped[str | None] = mapped_column(String(128), index=True)


class RecordLock(Base):
    __tablename__ = "record_locks"
    __table_args__ = (Index("ix_record_locks_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    prospect_id: Mapped[int] = mapped_column(Id, unique=True)
    agent_name: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str | None] = mapped_column(String(128))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]


# --- orchestrator-owned ------------------------------------------------------------------


class Handoff(Base):
    """Ledger of every handoff. The unique key is the exactly-once promise: one handoff per
    entry of a prospect into a state."""

    __tablename__ = "handoffs"
    __table_args__ = (
        UniqueConstraint(
            "prospect_id", "from_state", "state_entered_at", name="uq_handoffs_state_entry"
        ),
        Index("ix_handoffs_status_agent", "status", "to_agent"),
        Index("ix_handoffs_prospect_id", "prospect_id"),
        Index("ix_handoffs_updated_at", "updated_at"),
        Index("ix_handoffs_created_at", "created_at", "id"),
        # retention: finished rows oldest first
        Index("ix_handoffs_finished_at", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    prospect_id: Mapped[int] = mapped_column(Id)
    from_state: Mapped[str] = mapped_column(String(64))
    state_entered_at: Mapped[datetime]
    to_agent: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(default=1)
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    workflow_run_id: Mapped[str | None] = mapped_column(String(64))
    """The run that owns the row: a retried activity of the same run may proceed."""
    result: Mapped[dict[str, Any] | None]
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    no_worker: Mapped[bool | None]
    """Begun while no worker polled its agent's task queue (``orchestrator.task_queues``)."""


class Alert(Base):
    """One row per occurrence of a condition; at most one unresolved row per fingerprint."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_fingerprint",
            "fingerprint",
            unique=True,
            sqlite_where=UNRESOLVED,
            postgresql_where=UNRESOLVED,
        ),
        Index("ix_alerts_status_agent", "status", "agent_name"),
        # retention: resolved alerts oldest first
        Index("ix_alerts_resolved_at", "resolved_at"),
        Index("ix_alerts_held_by", "held_by"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(64))
    agent_name: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None]
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    count: Mapped[int] = mapped_column(default=1)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    notified_at: Mapped[datetime | None]
    """When people were last told (opened, worse, repeat); drives the repeat interval."""
    notified_severity: Mapped[str | None] = mapped_column(String(16))
    held_by: Mapped[str | None] = mapped_column(String(255))
    """What inhibits it (pipeline/inhibition.py): it is not notified while this holds."""


class Notification(Base):
    """Outbox: a notification is written with its alert, in the same transaction, and sent
    afterwards; a sink that is down leaves it pending, never lost."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_status_created", "status", "created_at"),
        # retention: is an alert still referred to (and the foreign key's check on delete)
        Index("ix_notifications_alert_id", "alert_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    alert_id: Mapped[int] = mapped_column(Id, ForeignKey("alerts.id"))
    sink: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class CycleHeartbeat(Base):
    """When each cycle mode last completed: what the watchdog reads."""

    __tablename__ = "cycle_heartbeats"

    mode: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_completed_at: Mapped[datetime]
    first_completed_at: Mapped[datetime]
    """Kept from the first time: the watchdog measures from it when no monitor ever ran."""


class PipelineReport(Base):
    __tablename__ = "pipeline_reports"
    __table_args__ = (
        UniqueConstraint("kind", "report_date", name="uq_reports_kind_date"),
        Index("ix_pipeline_reports_created_at", "created_at"),  # retention
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    report_date: Mapped[str] = mapped_column(String(10))
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class OrchestratorAction(Base):
    """Audit log: every action the orchestrator takes, with why."""

    __tablename__ = "orchestrator_actions"
    __table_args__ = (Index("ix_orchestrator_actions_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    prospect_id: Mapped[int | None] = mapped_column(Id, index=True)
    agent_name: Mapped[str | None] = mapped_column(String(64))
    workflow_id: Mapped[str | None] = mapped_column(String(255))
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]


class Event(Base):
    """Events for the dashboard stream. ``dedup_key`` makes writing them idempotent under
    activity retries."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    agent_name: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class AgentControl(Base):
    __tablename__ = "agent_controls"

    agent_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    paused: Mapped[bool] = mapped_column(default=False)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    circuit_state: Mapped[str] = mapped_column(String(16), default="closed")
    circuit_changed_at: Mapped[datetime | None]
    probe_handoff_id: Mapped[str | None] = mapped_column(String(128))
    """The one handoff let through while the circuit is half-open."""
    silenced_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class StateViolation(Base):
    __tablename__ = "state_violations"
    __table_args__ = (
        Index(
            "uq_state_violations_open",
            "prospect_id",
            "kind",
            unique=True,
            sqlite_where=text("resolved_at IS NULL"),
            postgresql_where=text("resolved_at IS NULL"),
        ),
        Index("ix_state_violations_kind_state", "kind", "state"),
        # retention: resolved violations oldest first
        Index("ix_state_violations_resolved_at", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    prospect_id: Mapped[int] = mapped_column(Id)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class AgentRunHour(Base):
    """One agent's ``agent_runs`` of one settled hour, as the sums and counts the health
    window is made of (averages kept as sum and count so hours add up exactly): 24 of these
    rows stand for a day of runs. Written, invalidated and pruned by
    db/commands/health_rollup.py; an hour without a row here is read from ``agent_runs``."""

    __tablename__ = "agent_run_hours"

    agent_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    """Start of the hour, UTC; the row covers runs started in [hour, hour + 1 h)."""
    runs: Mapped[int]
    errors: Mapped[int]
    successes: Mapped[int]
    running: Mapped[int]
    """Runs still running when the hour was sealed: fewer later means one finished, and the
    hour is sealed again."""
    records_sum: Mapped[int] = mapped_column(BigInteger)
    records_n: Mapped[int]
    duration_sum: Mapped[float] = mapped_column(Float)
    duration_n: Mapped[int]
    sealed_at: Mapped[datetime]


class AgentRunRollupMark(Base):
    """The newest ``agent_runs`` id at each rollup refresh: later refreshes look at the rows
    past an older mark for runs that arrived in hours already sealed."""

    __tablename__ = "agent_run_rollup_marks"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    max_run_id: Mapped[int] = mapped_column(BigInteger)
    recorded_at: Mapped[datetime]


class RetentionMark(Base):
    """How far housekeeping has deleted a table by id: the event stream reads it to tell a
    client resuming from a pruned position that the events it asked for are gone."""

    __tablename__ = "retention_marks"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    pruned_through: Mapped[int] = mapped_column(BigInteger)
    """The highest id deleted so far; rows at or below it may be missing."""
    updated_at: Mapped[datetime]


class AgentEndpointAnswer(Base):
    """When an HTTP agent's endpoint last answered (any status): its presence."""

    __tablename__ = "agent_endpoint_answers"

    agent_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    answered_at: Mapped[datetime]
    status_code: Mapped[int]
