"""The feed's database cost: a poll issues the same statements however large the table, and
its range query reads the state-entry index, not the table (asserted on the plan, on both
databases, never as a timing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.feed import FeedActivities, FeedPollInput, FeedRules
from activities.handoffs import HandoffActivities
from db.queries.feed import state_entries_query
from db.roles import is_postgres
from pipeline.handoffs import HandoffPolicy
from tests.helpers.factories import add, prospect
from tests.helpers.plans import query_plan

INDEX = "ix_prospects_live_state_entered"
ONE_POLL = FeedRules(quiet_return=timedelta(0))


def feed_activities(sessionmaker) -> FeedActivities:
    handoffs = HandoffActivities(sessionmaker, HandoffPolicy())
    return FeedActivities(sessionmaker, handoffs, ONE_POLL)


async def fill_prospects(owner_engine: AsyncEngine, n: int, entered: datetime) -> None:
    """``n`` live prospects that entered ``scored`` (tier C: no trigger admits them) long
    before ``entered``, written set-based as a bulk import would."""
    old = entered - timedelta(days=30)
    async with owner_engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text(
                    "INSERT INTO prospects (id, company_name, status, tier, status_changed_at,"
                    " created_at, updated_at) SELECT g, 'Bulk', 'scored', 'C',"
                    " CAST(:old AS timestamptz) + g * interval '1 second',"
                    " CAST(:old AS timestamptz), CAST(:old AS timestamptz)"
                    " FROM generate_series(1000, 999 + :n) AS g"
                ),
                {"old": old, "n": n},
            )
            await conn.execute(text("ANALYZE prospects"))
            return
        await conn.execute(
            text(
                "WITH RECURSIVE g(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM g"
                " WHERE i < 999 + :n) INSERT INTO prospects (id, company_name, status, tier,"
                " status_changed_at, created_at, updated_at) SELECT i, 'Bulk', 'scored', 'C',"
                " :old, :old, :old FROM g"
            ),
            {"old": old.replace(tzinfo=None).isoformat(sep=" "), "n": n},
        )
        await conn.execute(text("ANALYZE"))


async def statements_of_one_poll(engine: AsyncEngine, sessionmaker) -> list[str]:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        poll = await feed_activities(sessionmaker).poll_state_entries(FeedPollInput())
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert poll.polls == 1
    return statements


async def test_a_poll_issues_the_same_statements_whatever_the_size_of_the_table(
    engine: AsyncEngine, owner_engine: AsyncEngine, sessionmaker, agent_sessionmaker
) -> None:
    now = datetime.now(UTC)
    await add(agent_sessionmaker, *prospect("identified", pid=1, entered=now))
    small = await statements_of_one_poll(engine, sessionmaker)
    await fill_prospects(owner_engine, 20_000, now)
    large = await statements_of_one_poll(engine, sessionmaker)
    assert len(small) == len(large), (small, large)
    assert len(small) <= 6, small


async def test_the_range_query_reads_the_state_entry_index(
    db_url: str, engine: AsyncEngine, owner_engine: AsyncEngine
) -> None:
    now = datetime.now(UTC)
    await fill_prospects(owner_engine, 20_000, now)
    query = state_entries_query(now - timedelta(seconds=30), 2000)
    async with engine.connect() as conn:
        plan = await conn.run_sync(query_plan, query, is_postgres(db_url))
    assert INDEX in plan, plan
