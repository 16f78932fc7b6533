"""A deploy with Worker Versioning, on the dev server: v1 workers hold 200 open handoffs
(their agent held waiting); v2 workers whose handoff workflow cannot replay a v1 history
start, v2 is made current, the agent is let go. Every v1 handoff finishes on v1, the new
ones run on v2, no workflow task fails, and the ledger has each handoff once, finished.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import func, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from db.models import Handoff, Prospect
from orchestrator.settings import DeploymentSettings, Settings
from pipeline.handoffs import handoff_workflow_id
from tests.helpers.agents import FakeAgent
from tests.helpers.devserver import own_server  # noqa: F401 (this module's ``client``)
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import sweep, wait_until
from tests.helpers.incompatible_handoff import V2_WORKFLOWS, IncompatibleHandoffWorkflow
from worker import build_worker
from workflows.deployment import (
    current_build_id,
    deployment_version,
    make_current_if_none,
    set_current_version,
)

OPEN_ON_V1 = 200
NEW_ON_V2 = 20
V2_IDS = range(10_001, 10_001 + NEW_ON_V2)


def versioned(settings: Settings, build_id: str) -> Settings:
    deployment = DeploymentSettings(
        versioning=True, name=f"orch-{settings.temporal.task_queue}", build_id=build_id
    )
    return settings.model_copy(update={"deployment": deployment})


async def seed(sessionmaker, ids: range) -> None:
    await add(sessionmaker, *[row for pid in ids for row in prospect(pid=pid)])


async def ledger_rows(sessionmaker, *, finished: bool = False) -> int:
    query = select(func.count()).select_from(Handoff)
    if finished:
        query = query.where(Handoff.finished_at.is_not(None))
    async with sessionmaker() as session:
        return await session.scalar(query) or 0


async def make_current(client: Client, settings: Settings) -> None:
    """What ``temporal worker deployment set-current-version`` does, once the server has
    seen the version's pollers (it refuses a version nobody polls for)."""
    version = deployment_version(settings.deployment)
    for _ in range(50):
        try:
            await set_current_version(client, version)
            return
        except RPCError:
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{version} never became current")


async def build_ids_and_failures(client: Client, pid: int) -> tuple[set[str], int, bool]:
    """The build ids that completed the handoff's workflow tasks, its failed workflow
    tasks, and whether its first command was a timer (v2's code; v1 begins with the
    ledger's local activity)."""
    history = await client.get_workflow_handle(handoff_workflow_id(pid)).fetch_history()
    ids, failed, first = set(), 0, None
    for before, event in zip(history.events, history.events[1:], strict=False):
        if before.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            ids.add(before.workflow_task_completed_event_attributes.deployment_version.build_id)
            first = first or event.event_type
        failed += event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    return ids, failed, first == EventType.EVENT_TYPE_TIMER_STARTED


async def v2_cannot_replay(client: Client, pid: int) -> bool:
    """The v2 handoff really is incompatible: a v1 history fails to replay on it."""
    history: WorkflowHistory = await client.get_workflow_handle(
        handoff_workflow_id(pid)
    ).fetch_history()
    replayer = Replayer(
        workflows=[IncompatibleHandoffWorkflow],
        data_converter=pydantic_data_converter,
        unsandboxed_workflow_runner=SandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure is not None


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_rollout_finishes_v1_handoffs_on_v1_and_starts_new_ones_on_v2(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings
) -> None:
    v1, v2 = versioned(worker_settings, "v1"), versioned(worker_settings, "v2")
    gate = asyncio.Event()
    hygiene = FakeAgent("hygiene", agent_sessionmaker, tier=lambda _pid: "C", gate=gate)
    await seed(agent_sessionmaker, range(1, OPEN_ON_V1 + 1))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(hygiene.worker(client))
        await stack.enter_async_context(build_worker(client, sessionmaker, v1))
        assert await asyncio.wait_for(make_current_if_none(client, v1.deployment), 60)
        await asyncio.wait_for(sweep(client, v1), 60)
        await wait_until(lambda: _at_least(ledger_rows(sessionmaker), OPEN_ON_V1), within=60)

        await stack.enter_async_context(
            build_worker(client, sessionmaker, v2, workflows=V2_WORKFLOWS)
        )
        assert not await asyncio.wait_for(make_current_if_none(client, v2.deployment), 30)
        assert await current_build_id(client, v2.deployment.name) == "v1"
        await asyncio.wait_for(make_current(client, v2), 30)
        assert await current_build_id(client, v2.deployment.name) == "v2"

        await seed(agent_sessionmaker, V2_IDS)
        await asyncio.wait_for(sweep(client, v2), 60)
        gate.set()
        total = OPEN_ON_V1 + NEW_ON_V2
        await wait_until(
            lambda: _at_least(ledger_rows(sessionmaker, finished=True), total), within=120
        )

    runs = {pid: await build_ids_and_failures(client, pid) for pid in range(1, OPEN_ON_V1 + 1)}
    runs |= {pid: await build_ids_and_failures(client, pid) for pid in V2_IDS}
    on_v1 = [pid for pid, (ids, _, v2_code) in runs.items() if ids == {"v1"} and not v2_code]
    on_v2 = [pid for pid, (ids, _, v2_code) in runs.items() if ids == {"v2"} and v2_code]
    failed_tasks = sum(failed for _, failed, _ in runs.values())
    async with sessionmaker() as session:
        statuses = dict(
            (
                await session.execute(select(Handoff.status, func.count()).group_by(Handoff.status))
            ).all()
        )
        prospects_handed_off = await session.scalar(
            select(func.count(func.distinct(Handoff.prospect_id)))
        )
        scored = await session.scalar(
            select(func.count()).select_from(Prospect).where(Prospect.status == "scored")
        )
    print(
        f"\nrollout: v1 {len(on_v1)}, v2 {len(on_v2)}, failed workflow tasks {failed_tasks}, "
        f"ledger {statuses}, scored {scored}"
    )
    assert sorted(on_v1) == list(range(1, OPEN_ON_V1 + 1))
    assert sorted(on_v2) == list(V2_IDS)
    assert failed_tasks == 0
    assert statuses == {"completed": total}
    assert prospects_handed_off == total  # one ledger row each
    assert scored == total  # none lost
    assert max(hygiene.work.values()) == 1 and len(hygiene.work) == total  # none doubled
    assert await v2_cannot_replay(client, 1)


async def _at_least(count: object, wanted: int) -> bool:
    return await count >= wanted  # type: ignore[operator]
