"""``orchestrator doctor``: a deployment checked end to end, one line per check.

Why: each part can be down on its own (the database, Temporal, a worker, an agent team's
worker) and each shows only later, as stalled handoffs. The checks run in order and a check
whose prerequisite failed is skipped (and counts as failed), so the first failing line is the
one to fix. Every call is bounded by :data:`CHECK_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from enum import StrEnum

from rich.markup import escape
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from cli.errors import GRANT_HINT, describe
from db.engine import create_engine
from db.readiness import require_migrated
from db.roles import is_postgres, role_problems
from orchestrator.settings import Settings
from orchestrator.temporal_client import connect
from pipeline.contract import agent_task_queue
from pipeline.handoffs import feed_workflow_id
from pipeline.triggers import HANDED_TO
from workflows.schedules import scheduled_cycles
from workflows.search_attributes import ALL

CHECK_TIMEOUT_SECONDS = 10.0


class Status(StrEnum):
    OK = "ok"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "status": self.status.value}


STYLES = {Status.OK: "green", Status.FAIL: "red", Status.SKIP: "yellow"}


def rendered(checks: list[Check]) -> list[str]:
    """One line per check, in rich markup, names aligned."""
    width = max(len(check.name) for check in checks)
    return [
        f"[{STYLES[c.status]}]{c.status.value:<4}[/{STYLES[c.status]}] "
        f"{c.name:<{width}}  {escape(c.detail)}"
        for c in checks
    ]


def passed(checks: list[Check]) -> bool:
    """A skipped check counts as failed: its prerequisite did."""
    return all(check.status is Status.OK for check in checks)


async def run_checks(settings: Settings) -> list[Check]:
    checks = [database := await _database(settings)]
    if database.status is Status.OK:
        checks.append(await _roles(settings))
    else:
        checks.append(Check("roles", Status.SKIP, "the database is not ready"))
    client, temporal = await _temporal(settings)
    checks.append(temporal)
    names = ["search attributes", "schedules", "feed", "worker", *_agent_checks(settings)]
    if client is None:
        return checks + [Check(n, Status.SKIP, "Temporal is not reachable") for n in names]
    return checks + await _temporal_checks(client, settings)


async def _bounded(work: Awaitable[Check], name: str) -> Check:
    """``work``'s check, or a failed one with the reason a user can act on."""
    try:
        return await asyncio.wait_for(work, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return Check(name, Status.FAIL, f"no answer within {CHECK_TIMEOUT_SECONDS:.0f} s")
    except Exception as exc:
        failure = describe(exc)
        if failure is None:
            raise
        return Check(name, Status.FAIL, failure.message)


async def _database(settings: Settings) -> Check:
    async def check() -> Check:
        ready = await require_migrated(settings.resolved_database_url)
        backend = make_url(settings.resolved_database_url).get_backend_name()
        return Check("database", Status.OK, f"{backend}, at revision {ready.revision} (head)")

    return await _bounded(check(), "database")


async def _roles(settings: Settings) -> Check:
    url = settings.resolved_database_url
    if not is_postgres(url):
        return Check("roles", Status.OK, "SQLite has no roles")

    async def check() -> Check:
        orchestrator = make_url(url).username or ""
        ingest = make_url(settings.ingest_database_url or url).username or ""
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                problems = await role_problems(conn, orchestrator, ingest)
        finally:
            await engine.dispose()
        if problems:
            return Check("roles", Status.FAIL, f"{'; '.join(problems)}: {GRANT_HINT}")
        detail = f"{orchestrator} reads the agents' tables only, {ingest} writes agent_runs only"
        return Check("roles", Status.OK, detail)

    return await _bounded(check(), "roles")


async def _temporal(settings: Settings) -> tuple[Client | None, Check]:
    temporal = settings.temporal
    try:
        client = await connect(temporal)
    except Exception as exc:
        failure = describe(exc)
        if failure is None:
            raise
        return None, Check("temporal", Status.FAIL, failure.message)
    detail = f"{temporal.address}, namespace {temporal.namespace}"
    return client, Check("temporal", Status.OK, detail)


def _agent_checks(settings: Settings) -> list[str]:
    return [f"agent {name}" for name in _temporal_agents(settings)]


def _temporal_agents(settings: Settings) -> list[str]:
    """The agents handoffs reach through their own task queue (HTTP agents have none; the
    prospector receives no handoffs, so nobody need poll its queue)."""
    endpoints = settings.agent_endpoints
    return [
        n
        for n in settings.agents
        if n in HANDED_TO and (n not in endpoints or endpoints[n].transport != "http")
    ]


async def _temporal_checks(client: Client, settings: Settings) -> list[Check]:
    queue = settings.temporal.task_queue
    checks = [
        await _bounded(_search_attributes(client), "search attributes"),
        await _bounded(_schedules(client, settings), "schedules"),
        await _bounded(_feed(client, settings), "feed"),
        await _bounded(
            _served(client, "worker", queue, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW), "worker"
        ),
    ]
    for name in _temporal_agents(settings):
        served = _served(
            client, f"agent {name}", agent_task_queue(name), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        )
        checks.append(await _bounded(served, f"agent {name}"))
    return checks


async def _search_attributes(client: Client) -> Check:
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    if missing := [key.name for key in ALL if key.name not in listed.custom_attributes]:
        return Check(
            "search attributes",
            Status.FAIL,
            f"missing {', '.join(missing)}: start a worker (it registers them), or "
            "temporal operator search-attribute create on a cluster that refuses it",
        )
    return Check("search attributes", Status.OK, ", ".join(key.name for key in ALL))


async def _schedules(client: Client, settings: Settings) -> Check:
    if not settings.schedules.enabled:
        return Check("schedules", Status.OK, "turned off (ORCH_SCHEDULES__ENABLED=false)")
    problems = [
        problem
        for cycle in scheduled_cycles(settings)
        if (problem := await _schedule_problem(client, cycle.schedule_id, settings))
    ]
    if problems:
        hint = "run orchestrator schedules apply (a worker applies them as it starts)"
        return Check("schedules", Status.FAIL, f"{'; '.join(problems)}: {hint}")
    return Check("schedules", Status.OK, f"{len(scheduled_cycles(settings))} in place")


async def _schedule_problem(client: Client, schedule_id: str, settings: Settings) -> str | None:
    try:
        found = await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return f"{schedule_id} missing"
        raise
    action = found.schedule.action
    queue = settings.temporal.task_queue
    if isinstance(action, ScheduleActionStartWorkflow) and action.task_queue != queue:
        return f"{schedule_id} starts cycles on task queue {action.task_queue}, not {queue}"
    if found.schedule.state.paused:
        return f"{schedule_id} paused"
    return None


async def _feed(client: Client, settings: Settings) -> Check:
    if not settings.feed.enabled:
        return Check("feed", Status.OK, "turned off (ORCH_FEED__ENABLED=false)")
    workflow_id = feed_workflow_id(settings.temporal.task_queue)
    hint = "start a worker (it starts the feed and keeps it running)"
    try:
        found = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return Check("feed", Status.FAIL, f"{workflow_id} never ran: {hint}")
        raise
    if found.status is not WorkflowExecutionStatus.RUNNING:
        status = found.status.name.lower() if found.status else "unknown"
        return Check("feed", Status.FAIL, f"{workflow_id} is {status}: {hint}")
    return Check("feed", Status.OK, f"{workflow_id} running")


async def _served(client: Client, name: str, queue: str, kind: TaskQueueType.ValueType) -> Check:
    """Whether any worker polled ``queue`` lately (the server keeps pollers for minutes)."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
            task_queue_type=kind,
        )
    )
    if not described.pollers:
        what = "a worker" if name == "worker" else f"the {name.removeprefix('agent ')} worker"
        return Check(name, Status.FAIL, f"nobody polls task queue {queue}: start {what}")
    count = len(described.pollers)
    return Check(name, Status.OK, f"{count} poller{'s' * (count > 1)} on task queue {queue}")
