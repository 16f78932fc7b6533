"""The orchestrator's Temporal worker: its workflows and activities on one task queue.

Workers are stateless; run as many as the load needs. Each one keeps the Schedules in place
when it starts, which is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.agent_http import HttpAgentActivities
from activities.conflicts import ConflictActivities
from activities.feed import FeedActivities, FeedRules
from activities.findings import FindingsActivities
from activities.handoffs import HandoffActivities
from activities.health import HealthActivities
from activities.notify import SinkConfig
from activities.reports import ReportActivities
from activities.retention import RetentionActivities
from activities.upkeep import UpkeepActivities
from activities.validation import ValidationActivities
from db.commands.alerts import NotifyPolicy
from db.commands.reports import ReportConfig
from db.commands.upkeep import UpkeepRules
from orchestrator.allocator import trim_memory_every
from orchestrator.settings import Settings
from orchestrator.task_queues import TaskQueuePresence
from orchestrator.tracing import instrument_http
from workflows.cycle import CycleWorkflow
from workflows.deployment import deployment_config, make_current_if_none
from workflows.feed import FeedWorkflow
from workflows.handoff import HandoffWorkflow
from workflows.namespace import ensure_search_attributes
from workflows.schedules import apply_schedules
from workflows.starters import ensure_feed
from workflows.versioned import VERSIONED_WORKFLOWS

log = logging.getLogger(__name__)

WORKFLOWS = [CycleWorkflow, HandoffWorkflow, FeedWorkflow]


def build_activities(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    http: httpx.AsyncClient,
    client: Client,
) -> list[object]:
    policy = notify_policy(settings)
    presence = task_queue_presence(client, settings)
    health = HealthActivities(sessionmaker, settings.agents, settings.health)
    findings = FindingsActivities(sessionmaker, policy, settings.breaker.enabled)
    sweep = settings.handoffs
    handoffs = HandoffActivities(
        sessionmaker,
        sweep.policy(settings.agent_endpoints),
        page_size=sweep.page_size,
        max_children_per_run=sweep.max_children_per_run,
        start_batch=sweep.start_batch,
        max_in_flight=sweep.max_in_flight,
        saturated_wait=sweep.saturated_wait,
        breaker_cooldown=settings.breaker.cooldown,
        feed_overlap=settings.feed.overlap if settings.feed.enabled else None,
        presence=presence,
        notify=policy,
    )
    feed = FeedActivities(sessionmaker, handoffs, feed_rules(settings))
    http_agents = HttpAgentActivities(
        settings.agent_endpoints,
        http,
        settings.api_public_url,
        sessionmaker,
        answer_every=timedelta(seconds=settings.presence.cache_seconds),
    )
    reports = ReportActivities(sessionmaker, report_config(settings))
    validation = ValidationActivities(sessionmaker, settings.validation.rules(), policy)
    alerts = settings.alerts
    upkeep = UpkeepActivities(
        sessionmaker,
        UpkeepRules(watchdog_after=alerts.watchdog_after.total_seconds()),
        policy,
        SinkConfig(
            webhook_url=alerts.webhook_url,
            webhook_secret=_secret(alerts.webhook_secret),
            slack_url=_secret(alerts.slack_webhook_url),
            max_attempts=alerts.max_attempts,
        ),
        http,
        presence,
    )
    conflicts = ConflictActivities(
        sessionmaker, client, settings.conflicts, policy=sweep.policy(settings.agent_endpoints)
    )
    retention = RetentionActivities(sessionmaker, settings.retention)
    return [
        health.compute_agent_health,
        findings.record_health_findings,
        handoffs.find_pending_handoffs,
        feed.poll_state_entries,
        handoffs.begin_handoff,
        handoffs.mark_handoff,
        handoffs.finish_handoff,
        http_agents.trigger_http_agent,
        reports.generate_report,
        validation.prospect_id_bounds,
        validation.validate_range,
        validation.close_validation,
        conflicts.resolve_conflicts,
        conflicts.record_restarts,
        upkeep.after_cycle,
        retention.prune_retained_rows,
    ]


def feed_rules(settings: Settings) -> FeedRules:
    feed = settings.feed
    return FeedRules(
        poll_interval=feed.poll_interval,
        overlap=feed.overlap,
        quiet_return=feed.quiet_return,
        deferred_recheck=feed.deferred_recheck,
        chain_cooldown=feed.chain_cooldown,
    )


def task_queue_presence(client: Client, settings: Settings) -> TaskQueuePresence:
    """This process's cache of who polls the agents' task queues."""
    return TaskQueuePresence(
        client,
        cache_seconds=settings.presence.cache_seconds,
        poller_fresh=settings.presence.poller_fresh,
    )


def notify_policy(settings: Settings) -> NotifyPolicy:
    return NotifyPolicy(
        sinks=settings.alerts.sinks,
        repeat_after=settings.alerts.repeat_after,
        web_ui_url=settings.temporal.web_ui_url,
        dashboard_url=settings.api_public_url,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def report_config(settings: Settings) -> ReportConfig:
    return ReportConfig(settings.agents, settings.health, settings.time_zone, settings.reports.at)


def build_worker(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    task_queue: str | None = None,
    http: httpx.AsyncClient | None = None,
    workflows: Sequence[type] | None = None,
) -> Worker:
    """The worker; pass ``http`` to share (and later close) the HTTP agents' client, and
    ``workflows`` to register others than :func:`workflows_for` picks (a test's v2)."""
    http = http or httpx.AsyncClient(timeout=30)
    instrument_http(http)  # no-op unless tracing is installed
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=list(workflows or workflows_for(settings)),
        activities=build_activities(sessionmaker, settings, http, client),
        max_cached_workflows=settings.worker.max_cached_workflows,
        max_concurrent_activities=settings.worker.max_concurrent_activities,
        max_concurrent_local_activities=settings.worker.max_concurrent_local_activities,
        unsandboxed_workflow_runner=unsandboxed_runner(settings),
        deployment_config=deployment_config(settings.deployment),
        graceful_shutdown_timeout=settings.worker.graceful_shutdown,
    )


def workflows_for(settings: Settings) -> list[type]:
    """The versioned classes on a versioned worker: Temporal refuses a versioning behaviour
    from an unversioned one (workflows/versioned.py)."""
    return VERSIONED_WORKFLOWS if settings.deployment.versioning else WORKFLOWS


def unsandboxed_runner(settings: Settings) -> WorkflowRunner:
    """What runs the workflows defined outside the sandbox (the handoff): the sandbox itself
    when ``ORCH_WORKER__SANDBOX_ALL`` is on, as under test."""
    if settings.worker.sandbox_all:
        return SandboxedWorkflowRunner()
    return UnsandboxedWorkflowRunner()


async def prepare_namespace(client: Client, settings: Settings) -> None:
    """Search attributes first: a schedule or workflow that sets an unknown one fails."""
    await ensure_search_attributes(client)
    if settings.schedules.enabled:
        await apply_schedules(client, settings)


async def run_worker(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    stop: asyncio.Event,
    *,
    prepare: bool = True,
) -> None:
    if prepare:
        await prepare_namespace(client, settings)
    async with httpx.AsyncClient(timeout=30) as http:
        worker = build_worker(client, sessionmaker, settings, http=http)
        log.info("worker polling task queue %r", settings.temporal.task_queue)
        async with worker:
            trimming = asyncio.create_task(
                trim_memory_every(settings.worker.memory_trim_interval, stop)
            )
            feeding = asyncio.create_task(keep_feed_running(client, settings, stop))
            current = asyncio.create_task(make_current_if_none(client, settings.deployment))
            await stop.wait()
            await trimming
            await feeding
            current.cancel()
            log.info("worker stopping: no more polls, in-flight activities may finish")
    log.info("worker stopped")


async def keep_feed_running(client: Client, settings: Settings, stop: asyncio.Event) -> None:
    """Start the change feed if it is not running, and look again every ``keepalive``: a
    feed terminated by hand, or lost with a namespace reset, is back within that."""
    if not settings.feed.enabled:
        return
    task_queue = settings.temporal.task_queue
    while not stop.is_set():
        try:
            await ensure_feed(client, task_queue)
        except RPCError as exc:  # Temporal away: the next look starts it
            log.warning("could not make sure the change feed runs: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.feed.keepalive.total_seconds())
