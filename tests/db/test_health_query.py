"""Agent health computed from real ``agent_runs`` rows, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.queries.health import compute_agent_health
from pipeline.health import DEFAULT_EXPECTED_RECORDS, AgentHealth, HealthStatus, HealthThresholds
from tests.helpers.factories import NOW, add, run

H = timedelta(hours=1)
THRESHOLDS = HealthThresholds()


async def health_of(
    sessionmaker: async_sessionmaker[AsyncSession], agent: str = "hygiene"
) -> AgentHealth:
    async with sessionmaker() as session:
        agents = await compute_agent_health(session, DEFAULT_EXPECTED_RECORDS, THRESHOLDS, NOW)
    return next(a for a in agents if a.agent_name == agent)


def mixed(completed: int, failed: int, records: int = 20) -> list[object]:
    """``completed`` good runs and ``failed`` failures, spread over the last hours."""
    runs = [run("hygiene", ago=H * (1 + i * 0.1), records=records) for i in range(completed)]
    runs += [run("hygiene", "failed", ago=H * (1.05 + i * 0.1)) for i in range(failed)]
    return runs


async def test_empty_database_reports_every_agent_unknown(sessionmaker) -> None:
    async with sessionmaker() as session:
        agents = await compute_agent_health(session, DEFAULT_EXPECTED_RECORDS, THRESHOLDS, NOW)
    assert [a.agent_name for a in agents] == list(DEFAULT_EXPECTED_RECORDS)
    assert {a.status for a in agents} == {HealthStatus.UNKNOWN}
    assert all(a.last_successful_run is None and not a.is_healthy for a in agents)


@pytest.mark.parametrize(
    ("completed", "failed", "expected"),
    [
        (19, 1, HealthStatus.HEALTHY),
        (9, 1, HealthStatus.DEGRADED),
        (7, 3, HealthStatus.DEGRADED),
        (6, 4, HealthStatus.FAILING),
    ],
    ids=["5pct-healthy", "10pct-degraded", "30pct-degraded", "40pct-failing"],
)
async def test_error_rate_boundaries(
    sessionmaker, agent_sessionmaker, completed, failed, expected
) -> None:
    await add(agent_sessionmaker, *mixed(completed, failed))
    health = await health_of(sessionmaker)
    assert health.runs_last_24h == completed + failed
    assert health.errors_last_24h == failed
    assert health.error_rate == pytest.approx(failed / (completed + failed))
    assert health.status is expected


@pytest.mark.parametrize(
    ("since_success", "expected"),
    [
        (H * 5, HealthStatus.HEALTHY),
        (H * 6, HealthStatus.DEGRADED),
        (H * 24, HealthStatus.DEGRADED),
        (H * 25, HealthStatus.FAILING),
    ],
    ids=["5h", "6h", "24h", "25h"],
)
async def test_time_since_last_success_boundaries(
    sessionmaker, agent_sessionmaker, since_success, expected
) -> None:
    duration = timedelta(minutes=2)
    await add(agent_sessionmaker, run("hygiene", ago=since_success + duration, duration=duration))
    health = await health_of(sessionmaker)
    assert health.last_successful_run == NOW - since_success
    assert health.status is expected


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (11, HealthStatus.HEALTHY),
        (10, HealthStatus.DEGRADED),
        (4, HealthStatus.DEGRADED),
        (3, HealthStatus.FAILING),
    ],
    ids=["55pct", "50pct", "20pct", "15pct"],
)
async def test_records_per_run_boundaries(
    sessionmaker, agent_sessionmaker, records, expected
) -> None:
    # hygiene expects 20 records per run
    await add(agent_sessionmaker, *mixed(4, 0, records=records))
    health = await health_of(sessionmaker)
    assert health.avg_records_per_run == pytest.approx(records)
    assert health.status is expected


async def test_agent_that_stopped_days_ago_is_failing_not_unknown(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, run("hygiene", ago=H * 72))
    health = await health_of(sessionmaker)
    assert health.runs_last_24h == 0
    assert health.status is HealthStatus.FAILING
    assert any("since last success" in r for r in health.reasons)


async def test_agent_that_never_succeeded_for_over_a_day_is_failing(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, run("hygiene", "running", ago=H * 30))
    assert (await health_of(sessionmaker)).status is HealthStatus.FAILING


async def test_first_run_still_in_progress_is_healthy(sessionmaker, agent_sessionmaker) -> None:
    await add(agent_sessionmaker, run("hygiene", "running", ago=timedelta(minutes=5)))
    health = await health_of(sessionmaker)
    assert health.status is HealthStatus.HEALTHY
    assert health.runs_last_24h == 1


async def test_last_failure_durations_and_other_agents_are_reported(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(
        agent_sessionmaker,
        run("hygiene", ago=H * 3, duration=timedelta(seconds=60), records=30),
        run("hygiene", ago=H * 2, duration=timedelta(seconds=120), records=10),
        run("hygiene", "failed", ago=H * 5, error="older failure"),
        run("hygiene", "failed", ago=H * 4, error="timeout talking to CRM"),
        run("researcher", ago=H * 30),  # outside the window, another agent
        run("hygiene", ago=-H, records=99),  # after as_of: not seen yet
    )
    health = await health_of(sessionmaker)
    assert health.runs_last_24h == 4
    assert health.avg_records_per_run == pytest.approx(20)
    assert health.last_run_duration_seconds == pytest.approx(120)
    assert health.avg_run_duration_seconds == pytest.approx(90, rel=1e-3)
    assert health.last_error == "timeout talking to CRM"
    assert health.last_failure_at == NOW - H * 4 + timedelta(minutes=2)
    assert health.last_successful_run == NOW - H * 2 + timedelta(seconds=120)
    researcher = await health_of(sessionmaker, "researcher")
    assert researcher.runs_last_24h == 0
    assert researcher.status is HealthStatus.FAILING


async def test_query_count_is_constant_in_the_number_of_runs(
    engine: AsyncEngine, sessionmaker, agent_sessionmaker
) -> None:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    async def queries_for(n_runs: int) -> int:
        await add(agent_sessionmaker, *mixed(n_runs, n_runs // 10))
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", count)
        try:
            await health_of(sessionmaker)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", count)
        return len(statements)

    small, large = await queries_for(10), await queries_for(2000)
    assert small == large == 2
