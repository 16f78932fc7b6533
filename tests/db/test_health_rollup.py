"""The hourly rollup of agent runs (db/commands/health_rollup.py), on SQLite and PostgreSQL:
health read through it equals health aggregated from every run, whatever was sealed,
invalidated, finished late or arrived late; and the rollup is really what is read."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

import activities.health as health_module
from activities.health import ComputeHealthInput, HealthActivities
from db.commands.health_rollup import RefreshResult, RollupPolicy, refresh_rollup
from db.models import AgentRun, AgentRunHour, AgentRunRollupMark
from db.queries.health import compute_agent_health
from orchestrator.settings import HealthSettings
from pipeline.health import DEFAULT_EXPECTED_RECORDS, AgentHealth, HealthThresholds
from tests.helpers.factories import NOW, add, run
from tests.helpers.oracles import every_run_window_stats

Maker = async_sessionmaker[AsyncSession]
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
NAMES = list(DEFAULT_EXPECTED_RECORDS)
THRESHOLDS = HealthThresholds()
POLICY = RollupPolicy(window=THRESHOLDS.window, settle=H)
HourKey = tuple[str, datetime]


async def refresh(sessionmaker: Maker, now: datetime) -> RefreshResult:
    async with sessionmaker() as session, session.begin():
        return await refresh_rollup(session, NAMES, POLICY, now)


async def first_seal(sessionmaker: Maker, now: datetime) -> RefreshResult:
    """The two refreshes a new database needs before one may seal (they leave the marks the
    watermark comes from), then the one at ``now``."""
    for ago in (20, 10):
        assert (await refresh(sessionmaker, now - ago * MIN)).sealed == 0
    return await refresh(sessionmaker, now)


async def health(sessionmaker: Maker, as_of: datetime, *, rollup: bool = True) -> list[AgentHealth]:
    async with sessionmaker() as session:
        window = None if rollup else every_run_window_stats
        return await compute_agent_health(
            session, DEFAULT_EXPECTED_RECORDS, THRESHOLDS, as_of, window=window
        )


async def of(
    sessionmaker: Maker, agent: str, as_of: datetime = NOW, *, rollup: bool = True
) -> AgentHealth:
    agents = await health(sessionmaker, as_of, rollup=rollup)
    return next(a for a in agents if a.agent_name == agent)


async def assert_same_as_raw(sessionmaker: Maker, as_of: datetime) -> None:
    ours, raw = await health(sessionmaker, as_of), await health(sessionmaker, as_of, rollup=False)
    for o, r in zip(ours, raw, strict=True):
        for field, value in o.model_dump().items():
            expected = r.model_dump()[field]
            if isinstance(value, float):
                assert value == pytest.approx(expected, rel=1e-9, abs=1e-9), (as_of, field, o)
            else:
                assert value == expected, (as_of, o.agent_name, field)


async def sealed_hours(sessionmaker: Maker) -> dict[HourKey, dict[str, Any]]:
    async with sessionmaker() as session:
        rows = (await session.scalars(select(AgentRunHour))).all()
    return {(r.agent_name, r.hour): {c: getattr(r, c) for c in _FIGURES} for r in rows}


_FIGURES = ("runs", "errors", "successes", "running", "records_sum", "records_n", "duration_n")


async def finish(agent_sessionmaker: Maker, ids: list[int], records: int = 40) -> None:
    """The agent marks its running runs completed, two minutes after they started."""
    async with agent_sessionmaker() as session, session.begin():
        for run_id in ids:
            started = await session.scalar(select(AgentRun.started_at).where(AgentRun.id == run_id))
            await session.execute(
                update(AgentRun)
                .where(AgentRun.id == run_id)
                .values(
                    status="completed", completed_at=started + 2 * MIN, records_processed=records
                )
            )


# --- the property: rollup equals all-raw ----------------------------------------------------


def random_runs(rng: random.Random, end: datetime, n: int, span: timedelta) -> list[AgentRun]:
    """Runs of the configured agents and one stranger over ``span`` before ``end``: some on
    hour boundaries, running ones, failures, missing and negative records, and completions
    before the start."""
    rows = []
    for _ in range(n):
        started = end - span * rng.random()
        if rng.random() < 0.1:
            started = started.replace(minute=0, second=0, microsecond=0)
        status = rng.choices(["completed", "failed", "running"], [6, 2, 1])[0]
        rows.append(
            AgentRun(
                agent_name=rng.choice([*NAMES, "stranger"]),
                status=status,
                started_at=started,
                completed_at=None
                if status == "running"
                else started + timedelta(seconds=rng.uniform(-120, 1800)),
                records_processed=rng.choice([None, -3, 0, rng.randint(0, 60), rng.randint(0, 9)])
                if status == "completed"
                else None,
            )
        )
    return rows


def as_of_values(at: datetime) -> list[datetime]:
    """Checks on and off the hour (a window on the hour has both edges on hour boundaries),
    a microsecond past one, and a little in the past."""
    hour = at.replace(minute=0, second=0, microsecond=0)
    return [at, hour, hour + timedelta(microseconds=1), hour - 3 * H + 17 * MIN, at + 2 * H]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_health_through_the_rollup_equals_health_from_every_run(
    sessionmaker: Maker, agent_sessionmaker: Maker, seed: int
) -> None:
    rng = random.Random(seed)
    start = NOW - 6 * H + 7 * MIN
    await add(agent_sessionmaker, *random_runs(rng, start, 400, 30 * H))
    await first_seal(sessionmaker, start)
    at = start
    for as_of in as_of_values(at):
        await assert_same_as_raw(sessionmaker, as_of)
    for step in range(5):
        # the world moves on: runs finish, new ones start, old ones are posted late
        async with sessionmaker() as session:
            running = list(
                await session.scalars(select(AgentRun.id).where(AgentRun.status == "running"))
            )
        await finish(agent_sessionmaker, rng.sample(running, min(5, len(running))), step)
        at += timedelta(minutes=rng.choice([15, 40, 75]))
        await add(agent_sessionmaker, *random_runs(rng, at, 30, 2 * H))
        await add(agent_sessionmaker, *random_runs(rng, at - 10 * H, 5, 20 * H))
        result = await refresh(sessionmaker, at)
        assert not result.skipped
        for as_of in as_of_values(at):
            await assert_same_as_raw(sessionmaker, as_of)
    assert await sealed_hours(sessionmaker)


# --- sealing, invalidation, pruning ---------------------------------------------------------


async def test_a_run_still_running_when_its_hour_sealed_counts_once_it_finishes(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    hour = NOW - 5 * H
    await add(
        agent_sessionmaker,
        run("hygiene", ago=5 * H - 10 * MIN, records=10),
        run("hygiene", "running", ago=5 * H - 20 * MIN),
    )
    await first_seal(sessionmaker, NOW)
    assert (await sealed_hours(sessionmaker))[("hygiene", hour)]["running"] == 1
    before = await of(sessionmaker, "hygiene")
    assert (before.runs_last_24h, before.avg_records_per_run) == (2, 10)

    async with sessionmaker() as session:
        running = await session.scalar(select(AgentRun.id).where(AgentRun.status == "running"))
    await finish(agent_sessionmaker, [running], records=30)
    result = await refresh(sessionmaker, NOW + 10 * MIN)

    assert result.invalidated == 1
    assert (await sealed_hours(sessionmaker))[("hygiene", hour)]["running"] == 0
    after = await of(sessionmaker, "hygiene")
    assert (after.runs_last_24h, after.avg_records_per_run) == (2, 20)
    await assert_same_as_raw(sessionmaker, NOW)


async def test_a_run_posted_late_into_a_sealed_hour_counts_after_the_next_refresh(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *[run("outreach", ago=h * H, records=8) for h in range(2, 9)])
    await first_seal(sessionmaker, NOW)
    assert ("outreach", NOW - 5 * H) in await sealed_hours(sessionmaker)

    await add(agent_sessionmaker, run("outreach", "failed", ago=5 * H - 30 * MIN))
    stale = await of(sessionmaker, "outreach")
    assert (stale.runs_last_24h, stale.errors_last_24h) == (7, 0)  # the sealed hour, as sealed

    result = await refresh(sessionmaker, NOW + 15 * MIN)
    assert result.invalidated == 1
    fresh = await of(sessionmaker, "outreach")
    assert (fresh.runs_last_24h, fresh.errors_last_24h) == (8, 1)
    await assert_same_as_raw(sessionmaker, NOW)


async def test_a_run_whose_id_was_taken_before_a_refresh_and_committed_after_is_seen(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    """Explicit ids stand in for a transaction that took id 51 before the refresh at NOW
    and committed after it: the next refresh, 15 minutes later, must still look at id 51
    (a watermark held back from *now* would start after id 60)."""
    old = [_with_id(run("researcher", ago=(3 + i % 6) * H, records=5), i) for i in range(1, 51)]
    await add(agent_sessionmaker, *old)
    for ago in (20, 10):
        await refresh(sessionmaker, NOW - ago * MIN)
    newer = [_with_id(run("researcher", ago=30 * MIN, records=5), i) for i in range(52, 61)]
    await add(agent_sessionmaker, *newer)
    assert (await refresh(sessionmaker, NOW)).sealed > 0

    await add(agent_sessionmaker, _with_id(run("researcher", "failed", ago=4 * H + MIN), 51))
    result = await refresh(sessionmaker, NOW + 15 * MIN)

    assert (result.watermark, result.invalidated) == (50, 1)
    assert (await of(sessionmaker, "researcher")).errors_last_24h == 1
    await assert_same_as_raw(sessionmaker, NOW)


def _with_id(row: AgentRun, run_id: int) -> AgentRun:
    row.id = run_id
    return row


async def test_hours_newer_than_the_settle_time_are_never_sealed(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *[run("prospector", ago=m * MIN) for m in range(5, 400, 20)])
    now = NOW + 25 * MIN  # an hour ends at NOW; the one before it settled 35 minutes ago
    await first_seal(sessionmaker, now)
    sealed = await sealed_hours(sessionmaker)
    hours = {hour for _, hour in sealed}
    assert max(hours) == NOW - 2 * H
    assert len(sealed) == len(NAMES) * len(hours)  # every configured agent, runs or not
    assert sealed[("hygiene", NOW - 2 * H)]["runs"] == 0
    assert sealed[("prospector", NOW - 2 * H)]["runs"] == 3
    await assert_same_as_raw(sessionmaker, now)


async def test_rollup_rows_older_than_the_retention_span_are_pruned(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, run("hygiene", ago=40 * H), run("hygiene", ago=3 * H))
    await first_seal(sessionmaker, NOW)
    hours = {hour for _, hour in await sealed_hours(sessionmaker)}
    assert (min(hours), max(hours)) == (NOW - 48 * H, NOW - 2 * H)

    result = await refresh(sessionmaker, NOW + 5 * H)
    hours = {hour for _, hour in await sealed_hours(sessionmaker)}
    assert min(hours) == NOW - 43 * H
    assert result.pruned == 5 * len(NAMES)
    async with sessionmaker() as session:
        marks = (await session.scalars(select(AgentRunRollupMark.recorded_at))).all()
    assert sorted(marks) == [NOW - 10 * MIN, NOW, NOW + 5 * H]  # from the watermark on


async def test_two_refreshes_at_once_agree_with_one(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    """On PostgreSQL one takes the advisory lock and the other stands aside; on SQLite the
    second waits for the first's write lock. Either way nothing fails and the rollup is the
    one a single refresh builds."""
    await add(agent_sessionmaker, *random_runs(random.Random(9), NOW, 300, 30 * H))
    for ago in (20, 10):
        await refresh(sessionmaker, NOW - ago * MIN)
    results = await asyncio.gather(refresh(sessionmaker, NOW), refresh(sessionmaker, NOW))
    assert any(r.sealed for r in results)
    together = await sealed_hours(sessionmaker)

    async with sessionmaker() as session, session.begin():
        await session.execute(AgentRunHour.__table__.delete())
    await refresh(sessionmaker, NOW)
    assert await sealed_hours(sessionmaker) == together
    await assert_same_as_raw(sessionmaker, NOW)


# --- the rollup is what is read -------------------------------------------------------------


async def test_whole_hours_inside_the_window_are_read_from_the_rollup(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *[run("hygiene", ago=h * H + MIN) for h in range(2, 30)])
    await first_seal(sessionmaker, NOW)
    raw = await of(sessionmaker, "hygiene")
    async with sessionmaker() as session, session.begin():
        for hour, extra in ((NOW - 10 * H, 1000), (NOW - 24 * H, 100), (NOW - 25 * H, 10)):
            await session.execute(
                update(AgentRunHour)
                .where(AgentRunHour.agent_name == "hygiene", AgentRunHour.hour == hour)
                .values(runs=AgentRunHour.runs + extra)
            )
    # the window [NOW - 24 h, NOW] holds the hours starting NOW - 24 h .. NOW - 1 h
    assert (await of(sessionmaker, "hygiene")).runs_last_24h == raw.runs_last_24h + 1100
    # half an hour later the hour at NOW - 24 h is no longer whole: read from its runs
    later = NOW + 30 * MIN
    raw_later = await of(sessionmaker, "hygiene", later, rollup=False)
    assert (
        await of(sessionmaker, "hygiene", later)
    ).runs_last_24h == raw_later.runs_last_24h + 1000


# --- the activity ---------------------------------------------------------------------------


async def test_the_activity_refreshes_the_rollup_before_it_computes(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    now = datetime.now(UTC)
    await add(agent_sessionmaker, run("hygiene", ago=3 * H, now=now))
    activities = HealthActivities(sessionmaker, DEFAULT_EXPECTED_RECORDS, HealthSettings())
    snapshot = await ActivityEnvironment().run(
        activities.compute_agent_health, ComputeHealthInput(as_of=now)
    )
    assert next(a for a in snapshot.agents if a.agent_name == "hygiene").runs_last_24h == 1
    async with sessionmaker() as session:
        marks = (await session.scalars(select(AgentRunRollupMark.recorded_at))).all()
    assert len(marks) == 1 and marks[0] >= now


async def test_a_failed_refresh_is_a_warning_and_the_check_still_computes(
    sessionmaker: Maker,
    agent_sessionmaker: Maker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_args: object) -> RefreshResult:
        raise RuntimeError("rollup unavailable")

    monkeypatch.setattr(health_module, "refresh_rollup", broken)
    await add(agent_sessionmaker, run("hygiene", ago=3 * H))
    activities = HealthActivities(sessionmaker, DEFAULT_EXPECTED_RECORDS, HealthSettings())
    with caplog.at_level(logging.WARNING):
        snapshot = await ActivityEnvironment().run(
            activities.compute_agent_health, ComputeHealthInput(as_of=NOW)
        )
    assert next(a for a in snapshot.agents if a.agent_name == "hygiene").runs_last_24h == 1
    assert any("rollup refresh failed" in r.getMessage() for r in caplog.records)
