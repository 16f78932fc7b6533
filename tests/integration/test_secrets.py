"""No key, token or password in logs, in API answers or in CLI output.

Every secret is a marker string unique to this run. Each test configures them all, runs a real
path (the API with wrong and right keys, a cycle and an HTTP agent's handoff with its callback,
failing alert sinks, a database URL with a password, a Temporal API key, the ``orchestrator``
command, settings as text), captures everything written (the root logger at DEBUG, stdout and
stderr, response bodies and headers, error text stored in the database) and looks for markers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import make_url, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.auth import KEY_HEADER, hash_key
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import Handoff, Notification
from orchestrator.settings import (
    AgentEndpoint,
    AlertSettings,
    ApiKey,
    Role,
    Settings,
    TemporalSettings,
)
from orchestrator.signing import SIGNATURE_HEADER, sign
from pipeline.contract import AgentResult, ResultStatus
from pipeline.handoffs import handoff_workflow_id
from tests.api.test_auth import ROUTES
from tests.helpers.api import free_port, served
from tests.helpers.factories import add, mixed_history, prospect
from tests.helpers.handoffs import wait_until
from worker import build_worker
from workflows.cycle import CycleWorkflow
from workflows.types import CycleInput

RUN = uuid.uuid4().hex[:10]


def marker(what: str) -> str:
    return f"{what}-{RUN}-secret"


OPERATOR_KEY, VIEWER_KEY, WRONG_KEY = marker("opkey"), marker("viewkey"), marker("wrongkey")
AGENT_SECRET, WEBHOOK_SECRET, SLACK_TOKEN = marker("agent"), marker("hook"), marker("slack")
DB_PASSWORD, TEMPORAL_KEY = marker("dbpass"), marker("temporal")
MARKERS = [
    OPERATOR_KEY,
    VIEWER_KEY,
    WRONG_KEY,
    AGENT_SECRET,
    WEBHOOK_SECRET,
    SLACK_TOKEN,
    DB_PASSWORD,
    TEMPORAL_KEY,
]
BASE = "/api/v1"


def leaked(*texts: str) -> list[str]:
    """The markers found in ``texts``, whole or their first part (what and six characters of
    the run), for output that cuts long values short: each one a secret that got out."""
    tells = {m: m[: m.index("-") + 7] for m in MARKERS}
    return [m for m, tell in tells.items() if any(tell in text for text in texts)]


def answer_text(response: httpx.Response) -> str:
    return f"{response.status_code} {dict(response.headers)} {response.text}"


def with_secrets(settings: Settings, sink_url: str = "http://127.0.0.1:9") -> Settings:
    """``settings`` with every kind of secret set to its marker."""
    keys = [
        ApiKey(name="ops", role=Role.OPERATOR, sha256=hash_key(OPERATOR_KEY)),
        ApiKey(name="dash", role=Role.VIEWER, sha256=hash_key(VIEWER_KEY)),
    ]
    alerts = AlertSettings(
        webhook_url=f"{sink_url}/hook",
        webhook_secret=WEBHOOK_SECRET,
        slack_webhook_url=f"{sink_url}/slack/{SLACK_TOKEN}",
    )
    agent = AgentEndpoint(transport="http", url=f"{sink_url}/tasks", secret=AGENT_SECRET)
    return settings.model_copy(
        update={"api_keys": keys, "alerts": alerts, "agent_endpoints": {"researcher": agent}}
    )


def with_password(url: str) -> str:
    """``url`` with the marker as its password (PostgreSQL's test cluster trusts any)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of every logger, DEBUG up."""
    caplog.set_level(logging.DEBUG)
    yield caplog


@asynccontextmanager
async def asgi(
    settings: Settings, client: Client | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, through ASGI, sending no key unless a request does."""
    app = create_app(settings, temporal_client=client)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield http


# --- the API ---------------------------------------------------------------------------------


CREDENTIALS = [
    {},
    {KEY_HEADER: WRONG_KEY},
    {"Authorization": f"Bearer {WRONG_KEY}"},
    {"Authorization": f"Basic {WRONG_KEY}"},
    {KEY_HEADER: VIEWER_KEY},
    {KEY_HEADER: OPERATOR_KEY},
    {"Authorization": f"Bearer {OPERATOR_KEY}"},
]


async def test_api_answers_and_logs_show_no_key_token_or_password(
    settings: Settings, engine: object, logs: pytest.LogCaptureFixture
) -> None:
    """Every route, every kind of credential; Temporal configured with an API key and away,
    so actions end in the 503 that names what is unreachable."""
    temporal = TemporalSettings(address=f"127.0.0.1:{free_port()}", api_key=TEMPORAL_KEY)
    configured = with_secrets(settings).model_copy(update={"temporal": temporal})
    answers = []
    async with asgi(configured) as http:
        for method, path in ROUTES:
            for headers in CREDENTIALS:
                answers.append(await http.request(method, path, headers=headers))
        answers.append(await http.get("/readyz"))
    statuses = {a.status_code for a in answers}
    assert {200, 401, 403, 503} <= statuses, statuses
    assert not leaked(*map(answer_text, answers), logs.text)


async def test_database_errors_show_no_password(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL URL with a password, on a port where nothing listens."""
    url = f"postgresql+asyncpg://orchestrator:{DB_PASSWORD}@127.0.0.1:{free_port()}/pipeline"
    settings = with_secrets(Settings(state_dir=tmp_path, database_url=url))
    async with asgi(settings) as http:
        ready = await http.get("/readyz")
        health = await http.get(f"{BASE}/orchestrator/health", headers={KEY_HEADER: VIEWER_KEY})
    assert ready.status_code == 503 and health.status_code == 500
    assert not leaked(answer_text(ready), answer_text(health), logs.text)


# --- a cycle and an HTTP agent's handoff -----------------------------------------------------


class Outside:
    """The world the orchestrator talks to: an HTTP researcher that accepts tasks (202) and
    alert sinks that are down (the webhook answers 500, Slack 404 on its secret URL)."""

    def __init__(self) -> None:
        self.tasks: list[bytes] = []

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/tasks")
        async def take(request: Request) -> Response:
            self.tasks.append(await request.body())
            return Response(status_code=202)

        @app.post("/hook")
        async def hook() -> Response:
            return Response("webhook down", status_code=500)

        @app.post("/slack/{token}")
        async def slack(token: str) -> Response:
            return Response("no_service", status_code=404)

        return app


@pytest.fixture
async def owner_sessionmaker(
    db_url: str, engine: object
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions as the database's owner, to write the agents' rows as the agents would."""
    owner = create_engine(db_url)
    yield create_sessionmaker(owner)
    await owner.dispose()


async def _callbacks(http: httpx.AsyncClient, handoff_id: str) -> list[httpx.Response]:
    """The agent's late result, forged (wrong signature, then unsigned) and then signed."""
    body = AgentResult(status=ResultStatus.SKIPPED, detail="not a fit").model_dump_json().encode()
    url = f"{BASE}/handoffs/{handoff_id}/complete"
    forged = await http.post(url, content=body, headers={SIGNATURE_HEADER: sign(body, "wrong")})
    unsigned = await http.post(url, content=body)
    signed = await http.post(
        url, content=body, headers={SIGNATURE_HEADER: sign(body, AGENT_SECRET)}
    )
    return [forged, unsigned, signed]


@dataclass
class CycleRun:
    """A full cycle with every secret configured, and where its output went."""

    client: Client
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    owner_sessionmaker: async_sessionmaker[AsyncSession]
    logs: pytest.LogCaptureFixture
    capsys: pytest.CaptureFixture[str]

    async def texts(self) -> dict[str, str]:
        """Run it: a full cycle opens alerts (delivered to the failing sinks, so errors are
        recorded) and hands a prospect to the HTTP researcher, which answers later through
        the signed callback, forged first. Returns every text written, by where it went."""
        outside, port = Outside(), free_port()
        settings = with_secrets(self.settings, f"http://127.0.0.1:{port}")
        # alerts on the other agents (a failing researcher's open circuit defers its handoff)
        runs = [r for r in mixed_history(datetime.now(UTC)) if r.agent_name != "researcher"]
        await add(self.owner_sessionmaker, *runs, *prospect("needs_research", tier="B", pid=31))
        async with (
            served(outside.app(), port),
            build_worker(self.client, self.sessionmaker, settings),
            asgi(settings, self.client) as http,
        ):
            await self.client.execute_workflow(
                CycleWorkflow.run,
                CycleInput(mode="full"),
                id=f"secrets-{RUN}-{uuid.uuid4().hex[:6]}",
                task_queue=settings.temporal.task_queue,
            )
            await wait_until(lambda: outside.tasks)
            answers = await _callbacks(http, json.loads(outside.tasks[0])["handoff_id"])
            await self.client.get_workflow_handle(handoff_workflow_id(31)).result()
        assert [a.status_code for a in answers] == [401, 401, 202]
        out, err = self.capsys.readouterr()
        return {
            "answers": "\n".join(map(answer_text, answers)),
            "logs": self.logs.text,
            "stdout": out,
            "stderr": err,
            "stored errors": "\n".join(await _error_texts(self.sessionmaker)),
        }


@pytest.fixture
def cycle_run(
    client: Client,
    worker_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    owner_sessionmaker: async_sessionmaker[AsyncSession],
    logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> CycleRun:
    """On PostgreSQL the database URL carries a password as well."""
    url = with_password(worker_settings.resolved_database_url)
    settings = worker_settings.model_copy(update={"database_url": url})
    return CycleRun(client, settings, sessionmaker, owner_sessionmaker, logs, capsys)


def leaks_by_place(texts: dict[str, str], ignore: str | None = None) -> dict[str, list[str]]:
    found = {place: [m for m in leaked(text) if m != ignore] for place, text in texts.items()}
    return {place: markers for place, markers in found.items() if markers}


async def test_a_cycle_with_an_http_agent_and_alert_sinks_shows_no_secret(
    cycle_run: CycleRun,
) -> None:
    # the Slack URL is the xfail below
    assert leaks_by_place(await cycle_run.texts(), ignore=SLACK_TOKEN) == {}


async def test_a_failing_slack_delivery_shows_no_webhook_token(cycle_run: CycleRun) -> None:
    assert leaks_by_place(await cycle_run.texts()) == {}


async def _error_texts(sessionmaker: async_sessionmaker[AsyncSession]) -> list[str]:
    """Error text the orchestrator stored: failed deliveries and handoff details."""
    async with sessionmaker() as session:
        errors = list(await session.scalars(select(Notification.last_error)))
        details = list(await session.scalars(select(Handoff.detail)))
    assert any(errors), "the sinks were down: deliveries must have failed"
    return [text for text in errors + details if text]


# --- settings as text ------------------------------------------------------------------------


def all_secrets(tmp_path: Path) -> Settings:
    url = f"postgresql+asyncpg://orchestrator:{DB_PASSWORD}@db.internal/pipeline"
    return with_secrets(
        Settings(
            state_dir=tmp_path, database_url=url, temporal=TemporalSettings(api_key=TEMPORAL_KEY)
        )
    )


def test_settings_as_text_show_no_key_or_token(tmp_path: Path) -> None:
    settings = all_secrets(tmp_path)
    texts = [
        repr(settings),
        str(settings),
        repr(settings.alerts),
        repr(settings.temporal),
        repr(settings.agent_endpoints),
        repr(settings.api_keys),
    ]
    assert not [m for m in leaked(*texts) if m != DB_PASSWORD]


def test_settings_as_text_show_no_database_password(tmp_path: Path) -> None:
    settings = all_secrets(tmp_path)
    assert not leaked(repr(settings), str(settings))


def test_settings_validation_errors_show_no_secret() -> None:
    # the secret first: pydantic cuts the echoed input to its first and last 25 characters
    with pytest.raises(ValidationError) as raised:
        Settings(agent_endpoints={"researcher": {"secret": AGENT_SECRET, "transport": "http"}})
    assert not leaked(str(raised.value), repr(raised.value))


# --- the orchestrator command ----------------------------------------------------------------


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``orchestrator ARGS`` in a process of its own, logging at DEBUG."""
    command = [sys.executable, "-m", "cli.app", *args]
    full_env = {**os.environ, "ORCH_LOG_LEVEL": "DEBUG", **env}
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=120)


def secret_env(tmp_path: Path, database_url: str, temporal: str) -> dict[str, str]:
    endpoints = {
        "researcher": {
            "transport": "http",
            "url": "http://127.0.0.1:9/tasks",
            "secret": AGENT_SECRET,
        }
    }
    keys = [{"name": "ops", "role": "operator", "sha256": hash_key(OPERATOR_KEY)}]
    return {
        "ORCH_STATE_DIR": str(tmp_path / "state"),
        "ORCH_DATABASE_URL": database_url,
        "ORCH_TEMPORAL__ADDRESS": temporal,
        "ORCH_TEMPORAL__API_KEY": TEMPORAL_KEY,
        "ORCH_ALERTS__WEBHOOK_URL": "http://127.0.0.1:9/hook",
        "ORCH_ALERTS__WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ORCH_ALERTS__SLACK_WEBHOOK_URL": f"http://127.0.0.1:9/slack/{SLACK_TOKEN}",
        "ORCH_AGENT_ENDPOINTS": json.dumps(endpoints),
        "ORCH_API_KEYS": json.dumps(keys),
    }


COMMANDS = [
    ["db", "upgrade"],
    ["health"],
    ["health", "--json"],
    ["run", "--mode", "monitor"],
    ["schedules", "apply"],
    ["report", "--date", "2026-11-01"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_cli_output_shows_no_secret_when_the_database_and_temporal_are_away(
    tmp_path: Path, args: list[str]
) -> None:
    """Errors, tracebacks and DEBUG logs of commands that fail to connect."""
    port = free_port()
    url = f"postgresql+asyncpg://orchestrator:{DB_PASSWORD}@127.0.0.1:{port}/pipeline"
    done = cli(*args, env=secret_env(tmp_path, url, f"127.0.0.1:{port}"))
    assert done.returncode != 0
    assert not leaked(done.stdout, done.stderr)


async def test_cli_output_shows_no_secret_when_it_works(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    await add(create_sessionmaker(engine), *mixed_history(datetime.now(UTC)))
    await engine.dispose()
    env = secret_env(tmp_path, url, f"127.0.0.1:{free_port()}")
    done = [cli(*args, env=env) for args in (["health"], ["health", "--json"], ["db", "upgrade"])]
    assert [d.returncode for d in done] == [0, 0, 0], [d.stderr for d in done]
    assert not leaked(*(d.stdout + d.stderr for d in done))


def test_dev_banner_shows_no_database_password(tmp_path: Path) -> None:
    from cli.dev import _print_urls

    console = Console(record=True, width=200)
    server = SimpleNamespace(ui_url="http://127.0.0.1:8233", address="127.0.0.1:7233")
    _print_urls(console, all_secrets(tmp_path), server, SimpleNamespace(api_port=8000))  # type: ignore[arg-type]
    assert not leaked(console.export_text())


def test_cli_invalid_configuration_says_what_is_wrong_without_the_secret(tmp_path: Path) -> None:
    endpoints = {"researcher": {"secret": AGENT_SECRET, "transport": "http"}}
    env = {"ORCH_STATE_DIR": str(tmp_path), "ORCH_AGENT_ENDPOINTS": json.dumps(endpoints)}
    done = cli("health", env=env)
    assert done.returncode == 2
    assert "ORCH_AGENT_ENDPOINTS [researcher]: an http agent needs a url" in done.stderr
    assert not leaked(done.stdout, done.stderr)
