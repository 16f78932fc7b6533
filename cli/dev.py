"""``orchestrator dev``: the whole stack on a laptop, in one process, with one Ctrl-C to stop.

Starts the Temporal dev server (Web UI included) from the installed binary, migrates the
SQLite database, then runs the worker and the API until interrupted. SIGINT, SIGTERM and SIGHUP
stop the parts in order (simulated agents, worker, API, dev server), each within a bound; a
second signal kills the dev server and exits at once. The dev server is always stopped on the
way out, whatever went wrong, and dies with this process if it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.auth import hash_key, new_key
from cli.devserver import DevServer
from cli.services import (
    ApiServer,
    Service,
    api_server,
    run_stopping_in_order,
    serve_api_until,
    stop_on_signals,
)
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from orchestrator.sdk_metrics import install_sdk_metrics
from orchestrator.settings import ApiKey, Role, Settings, redact_url
from orchestrator.temporal_client import connect
from simulation.runner import run_simulation
from simulation.scenario import Scenario, simulated_expectations
from worker import prepare_namespace, run_worker
from workflows.schedules import HEALTH_CHECK_SCHEDULE_ID


@dataclass(frozen=True)
class DevOptions:
    state_dir: Path
    temporal_port: int
    ui_port: int
    api_port: int
    scenario: Scenario | None = None
    """Run the simulated agents with this scenario (``--simulate``)."""


log = logging.getLogger(__name__)

DEV_KEY_FILE = "dev-api-key"
STOP_GRACE = {"simulated agents": 2.0, "worker": 4.0, "API": 1.0}
"""Seconds each part may take to stop before it is cancelled (typically: 0.6, 1.5 to 3, and
0.2; the Temporal worker waits for its workflow tasks in flight)."""
SERVICES_STOP_WITHIN = 6.0
DISPOSE_WITHIN = 1.0
SERVER_STOP_GRACE = 2.0
"""The dev server's SIGTERM takes about 1.3 s; then SIGKILL, which its database survives.
A stop takes about five seconds; with these bounds, ten at most if every part overstays."""


def dev_key(state_dir: Path) -> tuple[str, bool]:
    """The local operator key, made on first use and kept (mode 0600) in the state dir;
    (key, whether it was just made)."""
    path = state_dir / DEV_KEY_FILE
    if path.exists():
        return path.read_text().strip(), False
    state_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key, True


def dev_settings(settings: Settings, options: DevOptions, server: DevServer, key: str) -> Settings:
    """The configured settings, pointed at the local dev server and state directory, with
    the local operator key added. A developer's stop is at once (no graceful shutdown: what
    was in flight is retried at the next start), as ``STOP_WITHIN`` in the tests expects."""
    temporal = settings.temporal.model_copy(
        update={
            "address": server.address,
            "tls": False,
            "api_key": None,
            "web_ui_url": server.ui_url,
        }
    )
    keys = [*settings.api_keys, ApiKey(name="dev", role=Role.OPERATOR, sha256=hash_key(key))]
    return settings.model_copy(
        update={
            "state_dir": options.state_dir,
            "temporal": temporal,
            "api_keys": keys,
            "api_public_url": f"http://{settings.api_host}:{options.api_port}",
            "worker": settings.worker.model_copy(update={"graceful_shutdown": timedelta(0)}),
        }
    )


async def run_dev(settings: Settings, options: DevOptions, console: Console) -> None:
    stop = asyncio.Event()
    server = DevServer(options.state_dir, port=options.temporal_port, ui_port=options.ui_port)
    stop_on_signals(stop, at_once=server.kill)
    console.print(f"starting Temporal dev server on {server.address} ...")
    await server.start()
    key, made = dev_key(options.state_dir)
    if made:
        console.print(
            f"[bold]Local operator API key[/bold] (shown once; kept in "
            f"{options.state_dir / DEV_KEY_FILE}): {key}"
        )
        # a fragment never reaches the server; the page moves the key into the tab's storage
        dashboard = f"http://{settings.api_host}:{options.api_port}/dashboard#key={key}"
        console.print(f"Dashboard with it: {dashboard}", soft_wrap=True)
    try:
        local = dev_settings(settings, options, server, key)
        if options.scenario is not None:
            local = local.model_copy(update={"agents": simulated_expectations(options.scenario)})
        await _run_stack(local, options, server, stop, console)
    finally:
        began = time.monotonic()
        await server.stop(SERVER_STOP_GRACE)
        log.debug("Temporal dev server stopped in %.2f s", time.monotonic() - began)
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            console.print("stopped.")


async def _run_stack(
    settings: Settings,
    options: DevOptions,
    server: DevServer,
    stop: asyncio.Event,
    console: Console,
) -> None:
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade(engine)
        install_sdk_metrics(settings.observability)
        client = await connect(settings.temporal)
        app = create_app(settings, temporal_client=client)
        api = api_server(app, settings.api_host, options.api_port)
        sessions = create_sessionmaker(engine)
        await prepare_namespace(client, settings)
        # a first cycle now, rather than at the next quarter hour; it waits for the worker
        await client.get_schedule_handle(HEALTH_CHECK_SCHEDULE_ID).trigger()
        _print_urls(console, settings, server, options)
        services = _services(client, sessions, settings, options, api)
        if options.scenario is not None:
            console.print("simulated agents: prospector, hygiene, researcher, outreach")
            # this stack expects their records per run; a command run elsewhere does not
            expected = json.dumps(settings.agents, separators=(",", ":"))
            console.print(
                f"commands in another terminal (orchestrator health, report) judge them as "
                f"this stack does with: export ORCH_AGENTS='{expected}'",
                soft_wrap=True,
                markup=False,
            )
        await run_stopping_in_order(services, stop, SERVICES_STOP_WITHIN)
    finally:
        # connections still out belong to cancelled work: closing them must not hold us up
        began = time.monotonic()
        await asyncio.wait([asyncio.ensure_future(engine.dispose())], timeout=DISPOSE_WITHIN)
        log.debug("database connections closed in %.2f s", time.monotonic() - began)


def _services(
    client: Client,
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    options: DevOptions,
    api: ApiServer,
) -> list[Service]:
    """The stack's parts in the order they stop: what makes work, what does it, what
    shows it."""
    services: list[Service] = []
    if (scenario := options.scenario) is not None:
        queue = settings.temporal.task_queue
        services.append(
            Service(
                "simulated agents",
                lambda stop: run_simulation(client, sessions, scenario, queue, stop),
                STOP_GRACE["simulated agents"],
            )
        )
    services.append(
        Service(
            "worker",
            lambda stop: run_worker(client, sessions, settings, stop, prepare=False),
            STOP_GRACE["worker"],
        )
    )
    services.append(Service("API", lambda stop: serve_api_until(api, stop), STOP_GRACE["API"]))
    return services


def _print_urls(
    console: Console, settings: Settings, server: DevServer, options: DevOptions
) -> None:
    api = f"http://{settings.api_host}:{options.api_port}"
    console.print(f"""
[bold]Pipeline Orchestrator (dev)[/bold]
  Temporal Web UI   {server.ui_url}
  Temporal gRPC     {server.address}
  API               {api}/api/v1/orchestrator/health
  API docs          {api}/docs   (send X-API-Key: see {settings.state_dir / DEV_KEY_FILE})
  Dashboard         {api}/dashboard   (asks once for the key in that file)
  Database          {redact_url(settings.resolved_database_url)}
Press Ctrl-C to stop.
""")
