"""The housekeeping cycle on a real Temporal dev server, against real databases: it prunes
in bounded passes, says per table what it removed, and the sweep after it hands nothing off
twice."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.client import Client

from db.models import Event, Handoff, OrchestratorAction
from orchestrator.settings import RetentionSettings, Settings
from pipeline.modes import FULL_ORDER, CycleMode
from tests.helpers.factories import add, count, finished_handoff, prospect
from tests.helpers.handoffs import run_cycle
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.schedules import HOUSEKEEPING_SCHEDULE_ID, scheduled_cycles
from workflows.types import CycleInput

HISTORIES = Path(__file__).parents[1] / "histories"
OLD = datetime.now(UTC) - timedelta(days=400)
BOUND = 60.0
"""Seconds any one cycle may take here before the test fails instead of hanging."""


async def seed(sessionmaker, agent_sessionmaker) -> None:
    """Prospect 1 still sits in the ``identified`` entry it was handed off from 400 days ago;
    its earlier entry's handoff, its audit row and seven events are past every window."""
    await add(agent_sessionmaker, *prospect("identified", pid=1, entered=OLD))
    await add(
        sessionmaker,
        finished_handoff(1, "identified", OLD),
        finished_handoff(1, "new", OLD - timedelta(days=3)),
        OrchestratorAction(action="handoff_started", prospect_id=1, created_at=OLD),
        *[Event(dedup_key=f"e{i}", kind="k", payload={}, created_at=OLD) for i in range(7)],
    )


def small_batches(settings: Settings) -> Settings:
    """Batches of 3, two per pass: seven events take more than one pass."""
    retention = RetentionSettings(batch_size=3, batches_per_pass=2, batch_pause=timedelta(0))
    return settings.model_copy(update={"retention": retention})


async def test_housekeeping_prunes_in_passes_and_the_sweep_after_it_hands_nothing_twice(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    await seed(sessionmaker, agent_sessionmaker)
    settings = small_batches(worker_settings)
    async with build_worker(client, sessionmaker, settings):
        handle = await client.start_workflow(
            CycleWorkflow.run,
            CycleInput(mode="housekeeping"),
            id=f"test-housekeeping-{uuid.uuid4().hex[:10]}",
            task_queue=settings.temporal.task_queue,
        )
        kept = await asyncio.wait_for(handle.result(), BOUND)
        sweep = await asyncio.wait_for(run_cycle(client, settings, "handoffs"), BOUND)
        history = await handle.fetch_history()
    if os.environ.get("ORCH_RECORD_HISTORIES") == "1" and "sqlite" in settings.database_url:
        (HISTORIES / "cycle_housekeeping.json").write_text(history.to_json())

    assert kept.housekeeping is not None
    assert kept.housekeeping.removed == {
        "events": 7,
        "notifications": 0,
        "alerts": 0,
        "violations": 0,
        "audit": 1,
        "handoffs": 1,
    }
    assert kept.housekeeping.passes > 1 and kept.steps_done == ["housekeeping"]
    assert await count(sessionmaker, Handoff) == 1  # the entry prospect 1 still sits in
    assert sweep.handoffs is not None
    assert (sweep.handoffs.pending, sweep.handoffs.started) == (0, 0)


def test_housekeeping_is_scheduled_daily_and_not_part_of_a_full_cycle() -> None:
    cycles = {c.schedule_id: c for c in scheduled_cycles(Settings())}
    assert cycles[HOUSEKEEPING_SCHEDULE_ID].cron == RetentionSettings().schedule
    assert cycles[HOUSEKEEPING_SCHEDULE_ID].mode is CycleMode.HOUSEKEEPING
    assert CycleMode.HOUSEKEEPING not in FULL_ORDER
