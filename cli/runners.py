"""What the CLI commands do, as async functions the CLI runs and tests can call."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from typing import Any

from temporalio.client import Client

from api.app import create_app
from cli.services import api_server, serve_api_until, stop_on_signals
from db.commands.reports import generate_report
from db.engine import create_engine, create_sessionmaker
from db.migrate import current_revision, upgrade
from db.queries.health import compute_agent_health
from db.readiness import require_migrated, require_reachable, sqlite_file
from orchestrator.sdk_metrics import install_sdk_metrics
from orchestrator.settings import Settings
from orchestrator.temporal_client import connect
from pipeline.health import AgentHealth
from pipeline.reports import ReportKind, report_date_for
from simulation.runner import run_simulation
from simulation.scenario import Scenario
from worker import report_config, run_worker
from workflows.schedules import apply_schedules
from workflows.starters import start_cycle
from workflows.types import CycleInput, CycleSummary

log = logging.getLogger(__name__)


async def migrate(settings: Settings, revision: str = "head") -> str | None:
    """Upgrade to ``revision``; on SQLite this creates the file, the one command that does."""
    if sqlite_file(settings.resolved_database_url) is None:
        await require_reachable(settings.resolved_database_url)  # a clear line if not
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade(engine, revision)
        return await current_revision(engine)
    finally:
        await engine.dispose()


async def read_health(settings: Settings) -> list[AgentHealth]:
    await require_migrated(settings.resolved_database_url)
    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return await compute_agent_health(
                session, settings.agents, settings.health, datetime.now(UTC)
            )
    finally:
        await engine.dispose()


async def make_report(settings: Settings, kind: ReportKind, day: date | None) -> dict[str, Any]:
    """Generate and store a report now (``None``: the latest report date); its payload."""
    now = datetime.now(UTC)
    day = day or report_date_for(now, settings.time_zone, settings.reports.at)
    await require_migrated(settings.resolved_database_url)
    engine = create_engine(settings.resolved_database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            report = await generate_report(session, report_config(settings), kind, day, now)
            return report.to_dict()
    finally:
        await engine.dispose()


async def run_cycle(
    settings: Settings, mode: str, wait: bool, client: Client | None = None
) -> tuple[str, CycleSummary | None]:
    client = client or await connect(settings.temporal)
    handle = await start_cycle(
        client,
        settings.temporal.task_queue,
        CycleInput(mode=mode),
        started_by="cli",
        summary=f"{mode} cycle, started from the command line",
    )
    workflow_id = handle.id
    return workflow_id, (await handle.result() if wait else None)


async def apply_all_schedules(settings: Settings) -> list[str]:
    return await apply_schedules(await connect(settings.temporal), settings)


async def run_worker_process(settings: Settings) -> None:
    await require_migrated(settings.resolved_database_url)
    stop = asyncio.Event()
    stop_on_signals(stop)
    engine = create_engine(settings.resolved_database_url)
    install_sdk_metrics(settings.observability)
    try:
        client = await connect(settings.temporal)
        await run_worker(client, create_sessionmaker(engine), settings, stop)
    finally:
        await engine.dispose()


async def run_simulation_process(settings: Settings, scenario: Scenario) -> None:
    await require_migrated(settings.resolved_database_url)
    stop = asyncio.Event()
    stop_on_signals(stop)
    engine = create_engine(settings.resolved_database_url)
    try:
        client = await connect(settings.temporal)
        await run_simulation(
            client, create_sessionmaker(engine), scenario, settings.temporal.task_queue, stop
        )
    finally:
        await engine.dispose()


async def run_api_process(settings: Settings, host: str, port: int) -> None:
    await require_migrated(settings.resolved_database_url)
    stop = asyncio.Event()
    stop_on_signals(stop)
    install_sdk_metrics(settings.observability)
    log.info("API on http://%s:%d (docs at /docs)", host, port)
    await serve_api_until(api_server(create_app(settings), host, port), stop)
