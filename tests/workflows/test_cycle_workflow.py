"""The monitor cycle on a real Temporal dev server, against real databases."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from db.commands.findings import RecordHealthInput, record_health_findings
from db.models import Alert, Event
from db.queries.health import compute_agent_health
from orchestrator.settings import Settings
from pipeline.health import HealthStatus
from tests.helpers.factories import add, count, run
from tests.helpers.handoffs import run_cycle
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

HISTORIES = Path(__file__).parents[1] / "histories"
H = timedelta(hours=1)


def now() -> datetime:
    return datetime.now(UTC)


async def seed_mixed_health(sessionmaker) -> None:
    """hygiene healthy, researcher failing (50% errors), outreach degraded (40% of expected
    records), prospector never ran (unknown)."""
    t = now()
    rows = [run("hygiene", ago=H * (1 + i), records=20, now=t) for i in range(5)]
    rows += [
        run("researcher", "failed" if i % 2 else "completed", ago=H * (1 + i), records=5, now=t)
        for i in range(6)
    ]
    rows += [run("outreach", ago=H * (1 + i), records=4, now=t) for i in range(3)]
    await add(sessionmaker, *rows)


async def test_monitor_cycle_raises_deduplicates_and_resolves_alerts(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    await seed_mixed_health(agent_sessionmaker)
    async with build_worker(client, sessionmaker, worker_settings):
        first = await run_cycle(client, worker_settings)
        second = await run_cycle(client, worker_settings)
        # researcher recovers: many good runs make its error rate low again
        t = now()
        await add(
            agent_sessionmaker,
            *[run("researcher", ago=timedelta(minutes=5 + i), records=5, now=t) for i in range(60)],
        )
        third = await run_cycle(client, worker_settings)

    assert first.health is not None and second.health is not None and third.health is not None
    assert first.health.statuses == {
        "prospector": HealthStatus.UNKNOWN,
        "hygiene": HealthStatus.HEALTHY,
        "researcher": HealthStatus.FAILING,
        "outreach": HealthStatus.DEGRADED,
    }
    assert (first.health.agents_checked, first.health.healthy) == (4, 1)
    assert (first.health.alerts_created, first.health.alerts_updated) == (2, 0)
    assert (second.health.alerts_created, second.health.alerts_updated) == (0, 2)
    assert third.health.statuses["researcher"] is HealthStatus.HEALTHY
    assert (third.health.alerts_resolved, third.health.alerts_updated) == (1, 1)

    assert await count(sessionmaker, Alert) == 2
    async with sessionmaker() as session:
        alerts = {a.agent_name: a for a in await session.scalars(select(Alert))}
    assert alerts["researcher"].status == "resolved"
    assert alerts["researcher"].severity == "critical"
    assert (alerts["outreach"].status, alerts["outreach"].severity) == ("open", "warning")
    assert alerts["outreach"].count == 3
    assert await count(sessionmaker, Event, Event.kind == "agent_unhealthy") == 5


async def test_monitor_cycle_history_is_recorded_for_replay(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    await seed_mixed_health(agent_sessionmaker)
    workflow_id = f"test-cycle-{uuid.uuid4().hex[:10]}"
    async with build_worker(client, sessionmaker, worker_settings):
        handle = await client.start_workflow(
            CycleWorkflow.run,
            CycleInput(mode="monitor"),
            id=workflow_id,
            task_queue=worker_settings.temporal.task_queue,
        )
        await handle.result()
        progress = await handle.query(CycleWorkflow.progress)
    assert (progress.step, progress.steps_done) == ("done", ["monitor"])
    history = await handle.fetch_history()
    assert len(history.events) > 10
    if os.environ.get("ORCH_RECORD_HISTORIES") == "1" and "sqlite" in worker_settings.database_url:
        (HISTORIES / "cycle_monitor.json").write_text(history.to_json())


async def test_bad_mode_fails_the_cycle_at_once_with_a_clear_error(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    async with build_worker(client, sessionmaker, worker_settings):
        with pytest.raises(WorkflowFailureError) as failure:
            await run_cycle(client, worker_settings, mode="MONITOR")
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "UnsupportedMode" and cause.non_retryable
    assert "unknown mode 'MONITOR'" in cause.message


async def test_unknown_mode_fails_and_names_the_known_ones(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    workflow_id = f"test-cycle-{uuid.uuid4().hex[:10]}"
    async with build_worker(client, sessionmaker, worker_settings):
        handle = await client.start_workflow(
            CycleWorkflow.run,
            CycleInput(mode="everything"),
            id=workflow_id,
            task_queue=worker_settings.temporal.task_queue,
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "known modes: monitor" in str(failure.value.cause)
    assert (await handle.describe()).status is WorkflowExecutionStatus.FAILED


async def test_recording_findings_twice_for_one_cycle_changes_nothing(
    sessionmaker, agent_sessionmaker
) -> None:
    """An activity retried after its commit must not double-count."""
    await seed_mixed_health(agent_sessionmaker)
    as_of = now()
    async with sessionmaker() as session:
        agents = await compute_agent_health(session, Settings().agents, Settings().health, as_of)
    findings_input = RecordHealthInput(cycle_id="cycle-1", as_of=as_of, agents=agents)
    async with sessionmaker() as session:
        once = await record_health_findings(session, findings_input)
    async with sessionmaker() as session:
        again = await record_health_findings(session, findings_input)
    assert (once.alerts_created, once.events_recorded) == (2, 2)
    assert (again.alerts_created, again.alerts_updated, again.events_recorded) == (0, 0, 0)
    assert (once.circuits_opened, again.circuits_opened) == (["researcher"], [])
    assert await count(sessionmaker, Alert) == 2
    assert await count(sessionmaker, Event, Event.kind == "agent_unhealthy") == 2
    assert await count(sessionmaker, Event, Event.kind == "circuit_opened") == 1
