"""Migrations build the schema the models describe, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine, create_sessionmaker
from db.migrate import current_revision, upgrade
from db.models import Base, CycleHeartbeat

AGENT_TABLES = {
    "prospects",
    "contacts",
    "activities",
    "outreach_sequences",
    "agent_runs",
    "record_locks",
}
OWN_TABLES = {
    "handoffs",
    "alerts",
    "pipeline_reports",
    "orchestrator_actions",
    "events",
    "agent_controls",
    "state_violations",
}


async def test_upgrade_creates_every_table_of_the_design(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert tables >= AGENT_TABLES | OWN_TABLES
    assert await current_revision(engine) is not None


async def test_migrations_match_the_models(engine: AsyncEngine) -> None:
    def diff(sync_conn):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrade_twice_is_a_no_op(engine: AsyncEngine) -> None:
    before = await current_revision(engine)
    await upgrade(engine)
    assert await current_revision(engine) == before


async def test_health_window_index_exists(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("agent_runs"))
    columns = {tuple(i["column_names"]) for i in indexes}
    assert ("agent_name", "started_at") in columns
    assert ("agent_name", "status", "completed_at") in columns


async def test_heartbeats_written_before_0003_start_from_their_last_completion(
    db_url: str,
) -> None:
    """Upgrading a running deployment: the watchdog's new "first completed" takes the last
    completion the row already had (the earliest moment the migration can vouch for)."""
    engine = create_engine(db_url)
    try:
        await upgrade(engine, "0002")
        async with engine.begin() as conn:
            await conn.execute(
                text("INSERT INTO cycle_heartbeats (mode, last_completed_at) VALUES (:m, :at)"),
                {"m": "handoffs", "at": datetime(2026, 11, 1, 12, tzinfo=UTC)},
            )
        await upgrade(engine)
        async with create_sessionmaker(engine)() as session:
            beat = await session.get(CycleHeartbeat, "handoffs")
        assert beat is not None
        assert beat.first_completed_at == beat.last_completed_at
        assert beat.first_completed_at.replace(tzinfo=UTC) == datetime(2026, 11, 1, 12, tzinfo=UTC)
    finally:
        await engine.dispose()
