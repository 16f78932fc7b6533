"""The whole cycle on a real Temporal dev server and real databases: a ``full`` cycle runs
monitor, handoffs and report in order with stand-in agents; a failing report step costs only
itself; a ``report`` cycle stores a weekly report; the ``orchestrator report`` command; and the
report schedules follow the report settings.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleActionStartWorkflow
from typer.testing import CliRunner

from cli.app import app
from db.commands.reports import REPORT_GENERATED, load_report
from db.engine import create_engine, create_sessionmaker
from db.models import AgentRun, Event
from db.models import PipelineReport as ReportRow
from orchestrator.settings import Settings
from pipeline import modes
from pipeline.health import HealthStatus
from pipeline.modes import FULL_ORDER, CycleMode
from pipeline.reports import report_date_for, report_window
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.factories import add, count, prospect, run
from tests.helpers.handoffs import record_history, running, wait_closed
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.schedules import (
    DAILY_REPORT_SCHEDULE_ID,
    WEEKLY_REPORT_SCHEDULE_ID,
    build_schedule,
    scheduled_cycles,
)
from workflows.types import CycleInput, CycleSummary

MINUTE, H, D = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
SPEC_KEYS = {
    "date",
    "total_prospects",
    "prospects_by_status",
    "prospects_by_tier",
    "activity",
    "sequences",
    "agents",
    "summary",
}
runner = CliRunner()
IMPLEMENTED = getattr(modes, "IMPLEMENTED_MODES", frozenset(CycleMode))
BUILT = [m.value for m in FULL_ORDER if m in IMPLEMENTED]
NOT_BUILT = [m.value for m in FULL_ORDER if m not in IMPLEMENTED]
"""A ``full`` cycle's steps, in order, as pipeline/modes.py has them: resolve and validate
were not built when these tests were written (skipped == ["resolve", "validate"]) and are
being built beside them; once ``IMPLEMENTED_MODES`` is gone every step is built (and
``CycleSummary.skipped`` goes with it)."""


def skipped(summary: CycleSummary) -> list[str]:
    return getattr(summary, "skipped", [])


# --- helpers --------------------------------------------------------------------------------


def latest_report_date(settings: Settings) -> date:
    return report_date_for(datetime.now(UTC), settings.time_zone, settings.reports.at)


async def cycle(
    client: Client, settings: Settings, input: CycleInput, limit: timedelta = 2 * MINUTE
) -> CycleSummary:
    workflow_id = f"test-{input.mode}-{uuid.uuid4().hex[:10]}"
    summary = await client.execute_workflow(
        CycleWorkflow.run,
        input,
        id=workflow_id,
        task_queue=settings.temporal.task_queue,
        execution_timeout=limit,
    )
    await record_history(client, workflow_id, f"cycle_{input.mode}", settings)
    return summary


def agent_runs(now: datetime, window: tuple[datetime, datetime]) -> list[AgentRun]:
    """The chain's agents healthy, the prospector failing (no handoff goes to it, so whatever
    the monitor does about a failing agent cannot stop the chain); two prospector runs inside
    the report window whatever the time of day, one failed, and one in the window before."""
    rows = [
        run(agent, ago=k * H, records=records, now=now)
        for agent, records in (("hygiene", 20), ("researcher", 5), ("outreach", 10))
        for k in (1, 2, 3, 4)
    ]
    rows += [run("prospector", "failed", ago=k * H, now=now) for k in (1, 2)]
    start, end = window
    rows += [
        run("prospector", "failed", ago=timedelta(0), now=end - 2 * H),
        run("prospector", ago=timedelta(0), records=10, now=start + H),
        run("prospector", ago=timedelta(0), records=10, now=start - H),
    ]
    return rows


def runs_inside(rows: list[AgentRun], window: tuple[datetime, datetime]) -> tuple[int, int]:
    inside = [r for r in rows if window[0] <= r.started_at < window[1]]
    return len(inside), sum(1 for r in inside if r.status == "failed")


# --- the full cycle -------------------------------------------------------------------------


async def test_full_cycle_runs_every_built_step_in_order_and_stores_the_daily_report(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pids = [9101, 9102, 9103]
    for pid in pids:
        await add(agent_sessionmaker, *prospect("identified", pid=pid))
    day = latest_report_date(worker_settings)
    window = report_window(day, worker_settings.time_zone, worker_settings.reports.at)
    runs = agent_runs(datetime.now(UTC), window)
    await add(agent_sessionmaker, *runs)

    async with running(client, sessionmaker, worker_settings, agents):
        summary = await cycle(client, worker_settings, CycleInput(mode="full"))
        for pid in pids:
            await wait_closed(client, pid)

    assert summary.mode == "full"
    assert summary.steps_done == BUILT
    assert skipped(summary) == NOT_BUILT
    assert set(BUILT) | set(NOT_BUILT) == {"monitor", "handoffs", "resolve", "validate", "report"}
    assert [s for s in BUILT if s in ("monitor", "handoffs", "report")] == [
        "monitor",
        "handoffs",
        "report",
    ]
    assert summary.errors == {}
    assert summary.finished_at is not None and summary.finished_at >= summary.started_at

    assert summary.health is not None
    assert summary.health.statuses == {
        "prospector": HealthStatus.FAILING,
        "hygiene": HealthStatus.HEALTHY,
        "researcher": HealthStatus.HEALTHY,
        "outreach": HealthStatus.HEALTHY,
    }
    assert (summary.health.agents_checked, summary.health.healthy) == (4, 3)
    assert summary.health.alerts_created == 1

    assert summary.handoffs is not None
    assert (summary.handoffs.pending, summary.handoffs.started) == (3, 3)
    for pid in pids:  # the chain ran through all three stand-in agents
        assert await prospect_status(sessionmaker, pid) == "in_sequence"

    report = summary.report
    assert report is not None
    assert (report.kind, report.report_date) == ("daily", day)
    assert (report.window_start, report.window_end) == window
    async with sessionmaker() as session:
        stored = await load_report(session, "daily", day)
    assert stored is not None
    assert set(stored) >= SPEC_KEYS
    assert stored["summary"] == report.summary
    assert stored["total_prospects"] == 3
    assert report.summary.startswith("Pipeline has 3 total prospects")
    expected_runs, expected_errors = runs_inside(runs, window)
    assert expected_runs >= 2 and expected_errors >= 1  # the prospector's are always inside
    assert stored["agents"] == {"runs": expected_runs, "errors": expected_errors}
    assert await count(sessionmaker, ReportRow) == 1
    assert await count(sessionmaker, Event, Event.kind == REPORT_GENERATED) == 1


async def test_full_cycle_with_a_report_date_still_open_records_why_and_goes_on(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    """A failing step (here the report, for a window that has not ended) is recorded with
    why; the other steps' results are kept."""
    future = latest_report_date(worker_settings) + D
    async with build_worker(client, sessionmaker, worker_settings):
        summary = await cycle(client, worker_settings, CycleInput(mode="full", report_date=future))

    assert (summary.steps_done, skipped(summary)) == (BUILT, NOT_BUILT)
    assert list(summary.errors) == ["report"]
    assert f"the daily report for {future}" in summary.errors["report"]
    assert "cannot be generated yet" in summary.errors["report"]
    assert summary.report is None
    assert summary.health is not None and summary.health.agents_checked == 4
    assert summary.handoffs is not None and summary.handoffs.pending == 0
    assert await count(sessionmaker, ReportRow) == 0


async def test_report_cycle_stores_a_weekly_report(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    day = latest_report_date(worker_settings)
    start, end = report_window(day, worker_settings.time_zone, worker_settings.reports.at, 7)
    await add(
        agent_sessionmaker,
        *prospect("identified", tier="A1", pid=1, entered=start + H),
        *prospect("scored", tier="A2", pid=2, entered=start - H),  # the week before
    )
    async with build_worker(client, sessionmaker, worker_settings):
        summary = await cycle(
            client, worker_settings, CycleInput(mode="report", report_kind="weekly")
        )

    assert summary.steps_done == ["report"]
    assert (skipped(summary), summary.errors) == ([], {})
    assert summary.health is None and summary.handoffs is None
    report = summary.report
    assert report is not None
    assert (report.kind, report.report_date) == ("weekly", day)
    assert (report.window_start, report.window_end) == (start, end)
    async with sessionmaker() as session:
        stored = await load_report(session, "weekly", day)
        daily = await load_report(session, "daily", day)
    assert daily is None
    assert stored is not None
    assert stored["kind"] == "weekly"
    assert {"previous_window", "deltas", "backlog", "bottleneck"} <= set(stored)
    assert stored["activity"]["added"] == 1
    assert stored["previous"]["added"] == 1
    assert (
        stored["summary"]
        == report.summary
        == (
            "Pipeline has 2 total prospects (1 A1, 1 A2). Added 1 new prospects this week. "
            "Sent 0 emails."
        )
    )


# --- orchestrator report --------------------------------------------------------------------


PAST = date(2026, 11, 10)


@pytest.fixture
def migrated_cli(cli_env: str) -> str:
    """The CLI configured for this test's database, migrated; its URL."""
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    return cli_env


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def flat(output: str) -> str:
    """Output with rich's line wrapping undone."""
    return re.sub(r"\s+", " ", output)


def on_db(db_url: str, work: Any) -> Any:
    """Run ``work(sessionmaker)`` on an engine of its own (the CLI tests are sync)."""

    async def main() -> Any:
        engine = create_engine(db_url)
        try:
            return await work(create_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def stored_report(db_url: str, kind: str, day: date) -> dict[str, Any] | None:
    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any] | None:
        async with sessionmaker() as session:
            return await load_report(session, kind, day)  # type: ignore[arg-type]

    return on_db(db_url, work)


def report_rows(db_url: str) -> int:
    return on_db(db_url, lambda sm: count(sm, ReportRow))


def test_report_command_prints_the_spec_json_and_stores_the_report(migrated_cli: str) -> None:
    start, end = report_window(PAST, "UTC")
    rows: list[object] = [
        *prospect("identified", tier="A1", pid=1, entered=start + H),
        *prospect("scored", tier="A2", pid=2, entered=start + 2 * H),
        *prospect("nurture", tier="B", pid=3, entered=start - D),
        run("hygiene", "failed", now=end - H),
        run("hygiene", now=end - 2 * H),
        run("hygiene", now=end + H),  # the next window
    ]
    on_db(migrated_cli, lambda sm: add(sm, *rows))

    result = invoke("report", "--date", PAST.isoformat(), "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) >= SPEC_KEYS
    assert (body["date"], body["kind"]) == ("2026-11-10", "daily")
    assert body["window"] == {"start": start.isoformat(), "end": end.isoformat()}
    assert body["total_prospects"] == 3
    assert body["prospects_by_status"] == {"identified": 1, "nurture": 1, "scored": 1}
    assert body["prospects_by_tier"] == {"A1": 1, "A2": 1, "B": 1}
    assert body["activity"] == {"added": 2, "scored": 0, "researched": 0, "emails_sent": 0}
    assert body["agents"] == {"runs": 2, "errors": 1}
    assert body["summary"] == (
        "Pipeline has 3 total prospects (1 A1, 1 A2). Added 2 new prospects today. Sent 0 emails."
    )
    assert stored_report(migrated_cli, "daily", PAST) == body
    assert report_rows(migrated_cli) == 1


def test_report_command_prints_markdown_without_json(migrated_cli: str) -> None:
    result = invoke("report", "--date", PAST.isoformat(), "--kind", "weekly")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## Pipeline weekly report, 2026-11-10\n")
    assert "### Funnel" in result.stdout
    assert stored_report(migrated_cli, "weekly", PAST) is not None
    assert stored_report(migrated_cli, "daily", PAST) is None


def test_report_command_defaults_to_the_latest_report_date(migrated_cli: str) -> None:
    expected = report_date_for(datetime.now(UTC), "UTC", time(8, 0))
    result = invoke("report", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["date"] == expected.isoformat()
    assert stored_report(migrated_cli, "daily", expected) is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2026-02-30"], "--date '2026-02-30' is not a date like 2026-11-01"),
        (["--date", "yesterday"], "--date 'yesterday' is not a date like 2026-11-01"),
        (["--kind", "monthly"], "unknown kind 'monthly'; use daily or weekly"),
    ],
    ids=["impossible-date", "not-a-date", "kind"],
)
def test_report_command_refuses_bad_input_with_exit_2(
    migrated_cli: str, args: list[str], message: str
) -> None:
    result = invoke("report", *args, "--json")
    assert result.exit_code == 2, result.output
    assert message in flat(result.output)
    assert "Traceback" not in result.output
    assert report_rows(migrated_cli) == 0


def test_report_command_refuses_a_date_whose_window_cannot_exist(migrated_cli: str) -> None:
    result = invoke("report", "--date", "0001-01-01", "--json")
    assert result.exit_code == 2, repr(result.exception)
    assert "0001-01-01" in flat(result.output)


def test_report_command_refuses_a_future_date(migrated_cli: str) -> None:
    future = report_date_for(datetime.now(UTC), "UTC", time(8, 0)) + D
    result = invoke("report", "--date", future.isoformat(), "--json")
    assert result.exit_code == 2, result.output
    output = flat(result.output)
    assert f"the daily report for {future.isoformat()}" in output
    assert "cannot be generated yet" in output
    assert report_rows(migrated_cli) == 0


# --- schedules ------------------------------------------------------------------------------


def report_crons(settings: Settings) -> dict[str, tuple[CycleMode, str, str]]:
    return {
        c.schedule_id: (c.mode, c.cron, c.report_kind)
        for c in scheduled_cycles(settings)
        if c.mode is CycleMode.REPORT
    }


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("ORCH_REPORTS__AT", "ORCH_REPORTS__WEEKLY_DAY", "ORCH_TIME_ZONE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_report_schedules_run_daily_and_on_mondays_at_eight(clean_env: pytest.MonkeyPatch) -> None:
    assert report_crons(Settings()) == {
        DAILY_REPORT_SCHEDULE_ID: (CycleMode.REPORT, "0 8 * * *", "daily"),
        WEEKLY_REPORT_SCHEDULE_ID: (CycleMode.REPORT, "0 8 * * 1", "weekly"),
    }


def test_report_schedules_follow_the_report_settings(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ORCH_REPORTS__AT", "07:30")
    clean_env.setenv("ORCH_REPORTS__WEEKLY_DAY", "5")
    clean_env.setenv("ORCH_TIME_ZONE", "Europe/Paris")
    settings = Settings()
    assert report_crons(settings) == {
        DAILY_REPORT_SCHEDULE_ID: (CycleMode.REPORT, "30 7 * * *", "daily"),
        WEEKLY_REPORT_SCHEDULE_ID: (CycleMode.REPORT, "30 7 * * 5", "weekly"),
    }
    weekly = next(c for c in scheduled_cycles(settings) if c.report_kind == "weekly")
    schedule = build_schedule(weekly, settings)
    assert schedule.spec.cron_expressions == ["30 7 * * 5"]
    assert schedule.spec.time_zone_name == "Europe/Paris"
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    [cycle_input] = action.args
    assert isinstance(cycle_input, CycleInput)
    assert (cycle_input.mode, cycle_input.report_kind) == ("report", "weekly")
    # the windows end when the schedules fire
    _, end = report_window(PAST, settings.time_zone, settings.reports.at)
    assert end == datetime(2026, 11, 10, 6, 30, tzinfo=UTC)  # 07:30 CET


@pytest.mark.parametrize("weekly_day", ["7", "-1"])
def test_a_weekly_day_outside_the_week_is_refused(
    clean_env: pytest.MonkeyPatch, weekly_day: str
) -> None:
    clean_env.setenv("ORCH_REPORTS__WEEKLY_DAY", weekly_day)
    with pytest.raises(ValueError, match="weekly_day"):
        Settings()
