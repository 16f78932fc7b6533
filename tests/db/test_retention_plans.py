"""Every retention batch seeks on an index, on both databases: a batch costs the rows it
deletes, not the table (asserted on the plan, never as a timing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.housekeeping_bench import history_rows
from db.commands.retention import RULES, batch_query
from db.models import (
    Alert,
    Event,
    Handoff,
    Notification,
    OrchestratorAction,
    PipelineReport,
    StateViolation,
)
from db.roles import is_postgres
from tests.helpers.plans import query_plan

N = 5000
T = datetime(2025, 1, 1, tzinfo=UTC)
INDEXES = {
    "events": "ix_events_created_at",
    "notifications": "ix_notifications_status_created",
    "alerts": "ix_alerts_resolved_at",
    "violations": "ix_state_violations_resolved_at",
    "audit": "ix_orchestrator_actions_created_at",
    "handoffs": "ix_handoffs_finished_at",
    "reports": "ix_pipeline_reports_created_at",
}


def rows(i: int) -> dict[Any, dict[str, Any]]:
    """Row ``i`` of every retained table, the ``i``-th minute after ``T``."""
    at = T + timedelta(minutes=i)
    event, action, ledger = history_rows(i, at)  # as the housekeeping benchmark makes them
    return {
        Event: event,
        OrchestratorAction: action,
        Handoff: ledger,
        Alert: {
            "id": i,
            "fingerprint": f"f{i}",
            "kind": "k",
            "severity": "warning",
            "status": "resolved",
            "message": "m",
            "first_seen": at,
            "last_seen": at,
            "resolved_at": at,
        },
        Notification: {
            "alert_id": i,
            "sink": "log",
            "event": "opened",
            "payload": {},
            "status": "sent" if i % 2 else "pending",
            "created_at": at,
        },
        StateViolation: {
            "prospect_id": i,
            "kind": "k",
            "first_seen": at,
            "last_seen": at,
            "resolved_at": at,
        },
        PipelineReport: {
            "kind": "daily",
            "report_date": f"d{i}",
            "window_start": at,
            "window_end": at,
            "payload": {},
            "created_at": at,
        },
    }


async def fill(engine: AsyncEngine) -> None:
    """``N`` rows in every retained table, then fresh statistics."""
    all_rows = [rows(i) for i in range(1, N + 1)]
    async with engine.begin() as conn:
        for model in all_rows[0]:
            await conn.execute(insert(model.__table__), [r[model] for r in all_rows])
        await conn.execute(text("ANALYZE"))


async def test_every_retention_batch_reads_its_index(
    db_url: str, owner_engine: AsyncEngine
) -> None:
    await fill(owner_engine)
    cutoff = T + timedelta(minutes=N // 10)
    async with owner_engine.connect() as conn:
        plans = {
            table: await conn.run_sync(
                query_plan, batch_query(table, cutoff, 1000), is_postgres(db_url)
            )
            for table in RULES
        }
    missed = {table: plan for table, plan in plans.items() if INDEXES[table] not in plan}
    assert not missed, missed
