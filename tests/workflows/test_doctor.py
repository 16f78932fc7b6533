"""``orchestrator doctor`` against a healthy stack (every line ok) and with each part missing
(that line fails). The stack is real: the worker as ``orchestrator worker`` runs it (search
attributes, Schedules, the feed) and stand-in agents polling their own task queues."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from cli.doctor import Check, Status, passed, run_checks
from db.roles import is_postgres
from orchestrator.settings import Settings
from pipeline.triggers import HANDED_TO
from tests.helpers.agents import FakeAgent
from worker import run_worker
from workflows.namespace import ensure_search_attributes
from workflows.schedules import scheduled_cycles

HEALTHY_WITHIN = 30.0
DAY = Duration(seconds=86_400)


async def own_namespace(client: Client, settings: Settings, attributes: bool = True) -> Settings:
    """``settings`` on a namespace of the test's own: on the shared one, other tests' agent
    workers polled ``agent-hygiene`` a moment ago. With our search attributes, if asked."""
    namespace = f"doctor-{uuid.uuid4().hex[:8]}"
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=DAY)
    )
    if attributes:
        target = client.service_client.config.target_host
        await ensure_search_attributes(await Client.connect(target, namespace=namespace))
    temporal = settings.temporal.model_copy(update={"namespace": namespace})
    return settings.model_copy(update={"temporal": temporal})


def handed_to(settings: Settings) -> list[str]:
    return [name for name in settings.agents if name in HANDED_TO]


@pytest.fixture
async def schedules_removed(client: Client, worker_settings: Settings) -> AsyncIterator[None]:
    """The Schedules' ids are global on the server: removed after the test applied them."""
    yield
    for cycle in scheduled_cycles(worker_settings):
        with contextlib.suppress(Exception):
            await client.get_schedule_handle(cycle.schedule_id).delete()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def checks_once_healthy(settings: Settings) -> list[Check]:
    """The checks once all pass, or the last ones at the deadline (workers take a moment
    to poll and the worker a moment to start the feed)."""
    deadline = asyncio.get_running_loop().time() + HEALTHY_WITHIN
    checks = await run_checks(settings)
    while not passed(checks) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.5)
        checks = await run_checks(settings)
    return checks


async def test_doctor_passes_every_check_on_a_running_stack(
    client: Client,
    worker_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    agent_sessionmaker: async_sessionmaker[AsyncSession],
    schedules_removed: None,
) -> None:
    stop = asyncio.Event()
    agents = [FakeAgent(name, agent_sessionmaker) for name in handed_to(worker_settings)]
    running = asyncio.create_task(run_worker(client, sessionmaker, worker_settings, stop))
    try:
        async with contextlib.AsyncExitStack() as stack:
            for agent in agents:
                await stack.enter_async_context(agent.worker(client))
            checks = await checks_once_healthy(worker_settings)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    assert [c for c in checks if c.status is not Status.OK] == []
    names = [c.name for c in checks]
    ground = ["database", "roles", "temporal", "search attributes", "schedules", "feed"]
    assert names[:7] == [*ground, "worker"]
    assert "prospector" in worker_settings.agents  # and receives no handoffs: not checked
    assert names[7:] == [f"agent {name}" for name in handed_to(worker_settings)]
    assert names[7:] == ["agent hygiene", "agent researcher", "agent outreach"]
    assert "7 in place" in by_name(checks)["schedules"].detail  # housekeeping is the 7th


async def test_doctor_fails_each_part_that_is_not_running(
    client: Client, worker_settings: Settings
) -> None:
    settings = await own_namespace(client, worker_settings)
    checks = by_name(await run_checks(settings))
    for name in ("database", "roles", "temporal", "search attributes"):
        assert checks[name].status is Status.OK, checks[name]
    failed = {name for name, check in checks.items() if check.status is Status.FAIL}
    assert failed == {
        "schedules",
        "feed",
        "worker",
        *(f"agent {n}" for n in handed_to(settings)),
    }
    queue = settings.temporal.task_queue
    assert f"nobody polls task queue {queue}: start a worker" in checks["worker"].detail
    assert "run orchestrator schedules apply" in checks["schedules"].detail
    assert f"feed-{queue} never ran" in checks["feed"].detail
    assert "nobody polls task queue agent-hygiene" in checks["agent hygiene"].detail


async def test_doctor_fails_search_attributes_on_a_namespace_without_them(
    client: Client, worker_settings: Settings
) -> None:
    bare = await own_namespace(client, worker_settings, attributes=False)
    checks = by_name(await run_checks(bare))
    assert checks["temporal"].status is Status.OK
    attributes = checks["search attributes"]
    assert attributes.status is Status.FAIL
    assert "missing CycleMode, ProspectId, AgentName, HandoffStatus" in attributes.detail
    assert checks["schedules"].detail.startswith("orchestrator-health-check missing")


async def test_doctor_fails_roles_when_connected_as_a_superuser(
    db_url: str, worker_settings: Settings
) -> None:
    if not is_postgres(db_url):
        pytest.skip("SQLite has no roles")
    as_owner = worker_settings.model_copy(update={"database_url": db_url})
    roles = by_name(await run_checks(as_owner))["roles"]
    assert roles.status is Status.FAIL
    assert "postgres can INSERT prospects" in roles.detail
    assert "run orchestrator db grant-roles" in roles.detail
