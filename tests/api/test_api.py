"""The REST API against real databases and a real Temporal dev server, through ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from orchestrator.settings import Settings
from tests.helpers.api import api_client, free_port
from tests.helpers.factories import add, mixed_history, run
from worker import build_worker

AGENTS = ["prospector", "hygiene", "researcher", "outreach"]
HEALTH = "/api/v1/orchestrator/health"
RUN = "/api/v1/orchestrator/run"


@pytest.fixture
async def db_api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a migrated database, with no Temporal client (health needs none)."""
    async with api_client(settings) as http:
        yield http


@pytest.fixture
async def api(worker_settings: Settings, engine: AsyncEngine, client: Client):
    """The API on a migrated database and the real Temporal dev server."""
    async with api_client(worker_settings, client) as http:
        yield http


def by_name(body: dict) -> dict[str, dict]:
    return {a["agent_name"]: a for a in body["agents"]}


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def add_mixed_history(sessionmaker: async_sessionmaker[AsyncSession]) -> datetime:
    """hygiene healthy, researcher failing on errors, outreach degraded on records,
    prospector failing on a stale last success. Returns the ``now`` the rows were made at."""
    now = datetime.now(UTC)
    await add(sessionmaker, *mixed_history(now))
    return now


# --- health -------------------------------------------------------------------------------


async def test_health_on_an_empty_database_is_unknown(db_api: httpx.AsyncClient) -> None:
    response = await db_api.get(HEALTH)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "unknown"
    assert [a["agent_name"] for a in body["agents"]] == AGENTS
    for agent in body["agents"]:
        assert agent["status"] == "unknown"
        assert agent["runs_last_24h"] == 0
        assert agent["last_successful_run"] is None
    checked = parse_time(body["checked_at"])
    assert abs(datetime.now(UTC) - checked) < timedelta(minutes=1)


async def test_health_reflects_the_run_history(
    db_api: httpx.AsyncClient, agent_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    now = await add_mixed_history(agent_sessionmaker)
    response = await db_api.get(HEALTH)
    assert response.status_code == 200
    body = response.json()
    agents = by_name(body)
    assert {name: a["status"] for name, a in agents.items()} == {
        "prospector": "failing",
        "hygiene": "healthy",
        "researcher": "failing",
        "outreach": "degraded",
    }
    assert body["status"] == "failing"

    hygiene = agents["hygiene"]
    assert hygiene["runs_last_24h"] == 10
    assert hygiene["errors_last_24h"] == 0
    assert hygiene["avg_records_per_run"] == pytest.approx(20)
    assert hygiene["reasons"] == []

    researcher = agents["researcher"]
    assert (researcher["runs_last_24h"], researcher["errors_last_24h"]) == (10, 5)
    assert researcher["error_rate"] == pytest.approx(0.5)
    assert researcher["last_error"] == "boom"
    assert any("error rate 50%" in why for why in researcher["reasons"])

    outreach = agents["outreach"]
    assert outreach["avg_records_per_run"] == pytest.approx(4)
    assert outreach["expected_records_per_run"] == 10
    assert any("4.0 records per run" in why for why in outreach["reasons"])

    prospector = agents["prospector"]
    assert prospector["runs_last_24h"] == 0
    last_success = parse_time(prospector["last_successful_run"])
    expected = now - timedelta(hours=30) + timedelta(minutes=2)
    assert abs(last_success - expected) < timedelta(seconds=1)
    assert any("since last success" in why for why in prospector["reasons"])


async def test_one_healthy_agent_makes_the_overall_status_healthy(
    db_api: httpx.AsyncClient, agent_sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Agents that never ran do not hide the ones that did: unknown only when all are."""
    now = datetime.now(UTC)
    await add(
        agent_sessionmaker, *(run("hygiene", ago=timedelta(hours=h), now=now) for h in (1, 2))
    )
    body = (await db_api.get(HEALTH)).json()
    assert by_name(body)["hygiene"]["status"] == "healthy"
    assert by_name(body)["prospector"]["status"] == "unknown"
    assert body["status"] == "healthy"


# --- run ----------------------------------------------------------------------------------


async def test_run_monitor_and_wait_returns_the_cycle_summary(
    api: httpx.AsyncClient,
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    agent_sessionmaker: async_sessionmaker[AsyncSession],
    worker_settings: Settings,
) -> None:
    now = datetime.now(UTC)
    await add(
        agent_sessionmaker, *(run("hygiene", ago=timedelta(hours=h), now=now) for h in (1, 2))
    )
    async with build_worker(client, sessionmaker, worker_settings):
        response = await api.post(RUN, params={"mode": "monitor", "wait": "true"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["mode"] == "monitor"
    assert body["workflow_id"].startswith("cycle-monitor-manual-")
    assert body["run_id"]
    assert body["workflow_id"] in body["web_ui_url"]
    assert body["web_ui_url"].startswith(worker_settings.temporal.web_ui_url)
    result = body["result"]
    assert result["mode"] == "monitor"
    assert result["health"]["agents_checked"] == 4
    assert result["health"]["healthy"] == 1
    assert result["health"]["statuses"] == {
        "prospector": "unknown",
        "hygiene": "healthy",
        "researcher": "unknown",
        "outreach": "unknown",
    }
    described = await client.get_workflow_handle(body["workflow_id"]).describe()
    assert described.status == WorkflowExecutionStatus.COMPLETED
    assert described.run_id == body["run_id"]


async def test_run_without_wait_starts_the_workflow_and_returns_at_once(
    api: httpx.AsyncClient, client: Client, worker_settings: Settings
) -> None:
    response = await api.post(RUN, params={"mode": "monitor"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["result"] is None
    assert body["mode"] == "monitor"
    handle = client.get_workflow_handle(body["workflow_id"])
    try:
        described = await handle.describe()
        assert described.id == body["workflow_id"]
        assert described.run_id == body["run_id"]
        assert described.workflow_type == "orchestrator-cycle"
        assert described.task_queue == worker_settings.temporal.task_queue
        # no worker polls this test's task queue, so the cycle is still waiting
        assert described.status == WorkflowExecutionStatus.RUNNING
    finally:
        await handle.terminate(reason="test cleanup")


async def test_run_that_outlives_wait_seconds_is_202_running_not_a_5xx(
    api: httpx.AsyncClient, client: Client
) -> None:
    """No worker serves this queue: the cycle cannot end within the wait, and goes on."""
    response = await api.post(
        RUN, params={"mode": "monitor", "wait": "true", "wait_seconds": "0.3"}
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["result"]) == ("running", None)
    assert body["workflow_id"].startswith("cycle-monitor-manual-")
    await client.get_workflow_handle(body["workflow_id"]).terminate(reason="test cleanup")


async def test_unknown_mode_is_a_422_naming_the_known_modes(api: httpx.AsyncClient) -> None:
    response = await api.post(RUN, params={"mode": "bogus"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "bogus" in detail
    assert "known modes: monitor, handoffs, resolve, validate, report, full" in detail


@pytest.mark.parametrize("value", ["0", "-1", "601"])
async def test_wait_seconds_out_of_range_is_a_readable_422(
    api: httpx.AsyncClient, value: str
) -> None:
    response = await api.post(RUN, params={"mode": "monitor", "wait_seconds": value})
    assert response.status_code == 422
    body = response.json()
    assert isinstance(body["detail"], str)
    assert body["detail"].startswith("query.wait_seconds: Input should be")
    assert body["errors"][0]["loc"] == ["query", "wait_seconds"]


async def test_wait_seconds_not_a_number_is_a_422(api: httpx.AsyncClient) -> None:
    response = await api.post(RUN, params={"mode": "monitor", "wait_seconds": "abc"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert "wait_seconds" in detail
    assert "number" in detail


async def test_unknown_route_is_a_404(db_api: httpx.AsyncClient) -> None:
    response = await db_api.get(f"/api/v1/orchestrator/{uuid.uuid4().hex}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_wrong_method_is_a_405(db_api: httpx.AsyncClient) -> None:
    assert (await db_api.get(RUN)).status_code == 405


# --- Temporal away ------------------------------------------------------------------------


@pytest.fixture
def unreachable_settings(settings: Settings) -> Settings:
    temporal = settings.temporal.model_copy(update={"address": f"127.0.0.1:{free_port()}"})
    return settings.model_copy(update={"temporal": temporal})


async def test_run_is_a_503_naming_the_address_when_temporal_is_away(
    unreachable_settings: Settings, engine: AsyncEngine
) -> None:
    address = unreachable_settings.temporal.address
    async with api_client(unreachable_settings) as http:
        response = await http.post(RUN, params={"mode": "monitor"})
        assert response.status_code == 503
        assert address in response.json()["detail"]
        assert "not reachable" in response.json()["detail"]
        health = await http.get(HEALTH)
    assert health.status_code == 200
    assert len(health.json()["agents"]) == 4


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("mode=bogus", "known modes"),
        ("mode=Monitor", "known modes"),
        ("mode=monitor&wait_seconds=abc", "wait_seconds"),
        ("mode=monitor&wait_seconds=0", "wait_seconds"),
    ],
)
async def test_bad_input_is_a_422_even_when_temporal_is_away(
    unreachable_settings: Settings, engine: AsyncEngine, query: str, says: str
) -> None:
    """A request that can never succeed must not be told to retry later (503)."""
    async with api_client(unreachable_settings) as http:
        response = await http.post(f"{RUN}?{query}")
    assert response.status_code == 422
    assert says in response.json()["detail"]


# --- OpenAPI ------------------------------------------------------------------------------


async def test_openapi_lists_the_endpoints(db_api: httpx.AsyncClient) -> None:
    response = await db_api.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "get" in paths[HEALTH]
    assert "post" in paths[RUN]
    params = {p["name"] for p in paths[RUN]["post"]["parameters"]}
    assert params == {"mode", "wait", "wait_seconds", "Idempotency-Key"}
