"""``/metrics`` in the Prometheus text format: the pipeline's state read from the database at
scrape time (agent health, queue depth, handoffs, alerts, cycle heartbeats), so every API
replica reports the same numbers. Send a viewer key (Prometheus: ``authorization``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import httpx
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from api.deps import SessionDep, SettingsDep, TemporalDep
from api.feed import read_feed
from api.schemas import errors
from api.temporal import TemporalUnavailable
from db.queries.handoffs import pending_counts
from db.queries.health import compute_agent_health
from db.queries.pipeline import (
    handoffs_by_status_and_agent,
    last_completed_cycles,
    unresolved_alerts_by_severity,
)
from orchestrator.sdk_metrics import installed_sdk_metrics
from pipeline.health import HealthStatus
from pipeline.metrics import FEED_LAG

log = logging.getLogger(__name__)

router = APIRouter(tags=["metrics"], responses=errors(401))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(*, session: SessionDep, settings: SettingsDep, temporal: TemporalDep) -> Response:
    """Prometheus metrics of the pipeline."""
    registry = CollectorRegistry()
    now = datetime.now(UTC)
    await _health(session, settings, registry, now)
    depth = await pending_counts(session)
    queue = Gauge(
        "orchestrator_pending_handoffs",
        "Prospects waiting for a handoff",
        ["agent"],
        registry=registry,
    )
    for agent in settings.agents:
        queue.labels(agent).set(depth.get(agent, 0))
    handoffs = Gauge(
        "orchestrator_handoffs",
        "Handoffs in the ledger by status",
        ["status", "agent"],
        registry=registry,
    )
    for status, agent, n in await handoffs_by_status_and_agent(session):
        handoffs.labels(status, agent).set(n)
    alerts = Gauge("orchestrator_open_alerts", "Unresolved alerts", ["severity"], registry=registry)
    open_alerts = {"warning": 0, "critical": 0} | await unresolved_alerts_by_severity(session)
    for severity, n in open_alerts.items():
        alerts.labels(severity).set(n)
    beats = Gauge(
        "orchestrator_cycle_last_completed_seconds",
        "Unix time a cycle step last completed",
        ["mode"],
        registry=registry,
    )
    for mode, at in (await last_completed_cycles(session)).items():
        beats.labels(mode).set(at.timestamp())
    await _feed(temporal, settings, registry)
    body = generate_latest(registry) + await _sdk_metrics()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def _feed(temporal: TemporalDep, settings: SettingsDep, registry: CollectorRegistry) -> None:
    """The change feed's lag and counts, from its ``state`` query (nothing while Temporal is
    away: the database's figures above still answer)."""
    running = Gauge(
        "orchestrator_feed_running", "1 when the change feed answers", registry=registry
    )
    try:
        state = await read_feed(await temporal.client(), settings)
    except TemporalUnavailable:
        state = None
    running.set(state is not None)
    if state is None:
        return
    lag = Gauge(
        FEED_LAG, "How long the oldest entry the feed last found had waited", registry=registry
    )
    lag.set(state.lag_seconds)
    counts = Gauge(
        "orchestrator_feed_total",
        "The feed's counts since it started",
        ["count"],
        registry=registry,
    )
    handoffs = state.handoffs
    for name, value in (
        ("polls", state.polls),
        ("nudges", state.nudges),
        ("handoffs_started", handoffs.started),
        ("handoffs_already_running", handoffs.already_running),
        ("handoffs_deferred", handoffs.deferred),
        ("handoffs_failed_to_start", handoffs.failed),
    ):
        counts.labels(name).set(value)


async def _sdk_metrics() -> bytes:
    """This process's Temporal SDK metrics (and the handoff and cycle metrics recorded
    through its meter), when it runs a worker or a client with the exporter installed."""
    sdk = installed_sdk_metrics()
    if sdk is None:
        return b""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(sdk.url)
            response.raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("SDK metrics at %s unavailable: %s", sdk.url, exc)
        return b""
    return response.content


async def _health(
    session: SessionDep, settings: SettingsDep, registry: CollectorRegistry, now: datetime
) -> None:
    status = Gauge(
        "orchestrator_agent_status",
        "1 for the agent's current health status",
        ["agent", "status"],
        registry=registry,
    )
    errors = Gauge(
        "orchestrator_agent_error_rate",
        "Failed runs / runs, last 24 h",
        ["agent"],
        registry=registry,
    )
    runs = Gauge(
        "orchestrator_agent_runs_24h", "Runs in the last 24 h", ["agent"], registry=registry
    )
    for health in await compute_agent_health(session, settings.agents, settings.health, now):
        for option in HealthStatus:
            status.labels(health.agent_name, option.value).set(health.status is option)
        errors.labels(health.agent_name).set(health.error_rate)
        runs.labels(health.agent_name).set(health.runs_last_24h)
