"""Run ingestion (``/api/v1/agents/{name}/runs``) against real databases, through ASGI: good
reports are stored, bad ones are refused whole with the reason, and health follows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AgentRun
from orchestrator.settings import Settings
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import count

Sessions = async_sessionmaker[AsyncSession]
RUNS = "/api/v1/agents/{}/runs"
HEALTH = "/api/v1/orchestrator/health"
DROP = object()
"""A field value meaning: leave the field out of the body."""


def iso(moment: datetime) -> str:
    return moment.isoformat()


def ago(minutes: float) -> str:
    return iso(datetime.now(UTC) - timedelta(minutes=minutes))


def report(**fields: Any) -> dict[str, Any]:
    """A good finished run (hygiene's 20 records, two minutes ago), with ``fields`` changed."""
    body: dict[str, Any] = {
        "status": "completed",
        "started_at": ago(3),
        "completed_at": ago(1),
        "records_processed": 20,
        "error": None,
        "handoff_id": None,
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not DROP}


def running(**fields: Any) -> dict[str, Any]:
    return report(
        **{"status": "running", "completed_at": DROP, "records_processed": DROP, **fields}
    )


async def stored(sessionmaker: Sessions) -> list[AgentRun]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AgentRun).order_by(AgentRun.id)))


@pytest.fixture
async def api(settings: Settings, sessionmaker: Sessions) -> AsyncIterator[httpx.AsyncClient]:
    """The API (operator key) on this test's migrated database."""
    async with api_client(settings) as http:
        yield http


# --- good input ------------------------------------------------------------------------------


async def test_a_finished_run_is_stored(api: httpx.AsyncClient, sessionmaker: Sessions) -> None:
    body = report(handoff_id="12:identified:1700000000000000")
    response = await api.post(RUNS.format("hygiene"), json=body)
    assert response.status_code == 201, response.text
    out = response.json()
    [row] = await stored(sessionmaker)
    assert out["id"] == row.id
    assert (row.agent_name, row.status) == ("hygiene", "completed")
    assert (row.records_processed, row.error) == (20, None)
    assert row.handoff_id == "12:identified:1700000000000000"
    assert row.started_at == datetime.fromisoformat(body["started_at"])
    assert row.completed_at == datetime.fromisoformat(body["completed_at"])
    assert out["agent_name"] == "hygiene" and out["status"] == "completed"


async def test_a_failed_run_is_stored_with_its_error_and_any_offset(
    api: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    started = datetime.now(timezone(timedelta(hours=-5))) - timedelta(minutes=10)
    body = report(
        status="failed",
        started_at=iso(started),
        completed_at=ago(5),
        records_processed=DROP,
        error="x" * 4000,
    )
    response = await api.post(RUNS.format("researcher"), json=body)
    assert response.status_code == 201, response.text
    [row] = await stored(sessionmaker)
    assert (row.agent_name, row.status, row.error) == ("researcher", "failed", "x" * 4000)
    assert row.started_at == started  # the same instant, kept in UTC
    assert row.started_at.utcoffset() == timedelta(0)


async def test_a_running_run_is_finished_with_patch(
    api: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    created = await api.post(RUNS.format("outreach"), json=running(handoff_id="h-1"))
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    [row] = await stored(sessionmaker)
    assert (row.status, row.completed_at, row.records_processed) == ("running", None, None)

    finished_at = ago(0.5)
    update = {"status": "completed", "completed_at": finished_at, "records_processed": 7}
    response = await api.patch(f"{RUNS.format('outreach')}/{run_id}", json=update)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    [row] = await stored(sessionmaker)
    assert (row.id, row.status, row.handoff_id) == (run_id, "completed", "h-1")
    assert row.records_processed == 7
    assert row.completed_at == datetime.fromisoformat(finished_at)

    # a running run can also end in failure
    second = (await api.post(RUNS.format("outreach"), json=running())).json()["id"]
    failed = {"status": "failed", "completed_at": ago(0.1), "error": "SMTP 550"}
    response = await api.patch(f"{RUNS.format('outreach')}/{second}", json=failed)
    assert response.status_code == 200, response.text
    assert [(r.status, r.error) for r in await stored(sessionmaker)] == [
        ("completed", None),
        ("failed", "SMTP 550"),
    ]


async def test_runs_are_listed_by_handoff_and_status(api: httpx.AsyncClient) -> None:
    bodies = [
        ("hygiene", report(handoff_id="h-1")),
        (
            "hygiene",
            report(status="failed", records_processed=DROP, error="boom", handoff_id="h-1"),
        ),
        ("hygiene", report(handoff_id="h-2")),
        ("hygiene", running(handoff_id="h-3")),
        ("researcher", report(handoff_id="h-1")),
    ]
    for agent, body in bodies:
        assert (await api.post(RUNS.format(agent), json=body)).status_code == 201

    async def listed(**params: str) -> list[tuple[str | None, str]]:
        response = await api.get(RUNS.format("hygiene"), params=params)
        assert response.status_code == 200, response.text
        rows = response.json()
        assert {r["agent_name"] for r in rows} <= {"hygiene"}
        return sorted((r["handoff_id"], r["status"]) for r in rows)

    assert await listed() == [
        ("h-1", "completed"),
        ("h-1", "failed"),
        ("h-2", "completed"),
        ("h-3", "running"),
    ]
    assert await listed(handoff_id="h-1") == [("h-1", "completed"), ("h-1", "failed")]
    assert await listed(status="completed") == [("h-1", "completed"), ("h-2", "completed")]
    assert await listed(handoff_id="h-1", status="failed") == [("h-1", "failed")]
    assert await listed(handoff_id="h-9") == []
    assert (await api.get(RUNS.format("hygiene"), params={"status": "done"})).status_code == 422
    unknown = await api.get(RUNS.format("nobody"))
    assert unknown.status_code == 404


# --- bad input: refused whole, nothing stored --------------------------------------------------

FUTURE = iso(datetime.now(UTC) + timedelta(days=2))
BAD_REPORTS: dict[str, tuple[str, Any, int, str]] = {
    # case: (agent, body (dict, or raw text), status, a phrase of the answer)
    "unknown agent": (
        "nobody",
        report(),
        404,
        "unknown agent 'nobody'; configured agents: prospector, hygiene, researcher, outreach",
    ),
    "negative records": (
        "hygiene",
        report(records_processed=-1),
        422,
        "records_processed: Input should be greater than or equal to 0",
    ),
    "completed before started": (
        "hygiene",
        report(started_at=ago(1), completed_at=ago(2)),
        422,
        "completed_at is before started_at",
    ),
    "completed without completed_at": (
        "hygiene",
        report(completed_at=DROP),
        422,
        "a completed run needs completed_at",
    ),
    "failed without completed_at": (
        "hygiene",
        report(status="failed", completed_at=None, records_processed=DROP, error="boom"),
        422,
        "a failed run needs completed_at",
    ),
    "running with completed_at": (
        "hygiene",
        report(status="running", records_processed=DROP),
        422,
        "a running run has no completed_at yet",
    ),
    "running with records": (
        "hygiene",
        running(records_processed=3),
        422,
        "records_processed is reported when the run ends",
    ),
    "naive started_at": (
        "hygiene",
        report(
            started_at="2026-01-01T10:00:00",
            completed_at=DROP,
            status="running",
            records_processed=DROP,
        ),
        422,
        "started_at: Input should have timezone info",
    ),
    "naive completed_at": (
        "hygiene",
        report(completed_at="2026-01-01T10:00:00"),
        422,
        "completed_at: Input should have timezone info",
    ),
    "started in the future": (
        "hygiene",
        running(started_at=FUTURE),
        422,
        "started_at is in the future",
    ),
    "completed in the future": (
        "hygiene",
        report(completed_at=FUTURE),
        422,
        "completed_at is in the future",
    ),
    "malformed json": (
        "hygiene",
        '{"status": "completed", "started_at": ',
        422,
        "JSON decode error",
    ),
    "not an object": ("hygiene", "[1, 2]", 422, "Input should be a valid dictionary"),
    "empty body": ("hygiene", "", 422, "Field required"),
    "records not a number": (
        "hygiene",
        report(records_processed="many"),
        422,
        "records_processed: Input should be a valid integer",
    ),
    "records fractional": (
        "hygiene",
        report(records_processed=2.5),
        422,
        "records_processed: Input should be a valid integer",
    ),
    "status not a string": ("hygiene", report(status=1), 422, "status: Input should be"),
    "unknown status": (
        "hygiene",
        report(status="done"),
        422,
        "status: Input should be 'running', 'completed' or 'failed'",
    ),
    "started_at not a time": (
        "hygiene",
        report(started_at="yesterday"),
        422,
        "started_at: Input should be a valid datetime",
    ),
    "error over 4000 chars": (
        "hygiene",
        report(status="failed", records_processed=DROP, error="e" * 4001),
        422,
        "error: String should have at most 4000 characters",
    ),
    "handoff id over 128 chars": (
        "hygiene",
        report(handoff_id="h" * 129),
        422,
        "handoff_id: String should have at most 128 characters",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REPORTS))
async def test_bad_reports_are_refused_and_nothing_is_stored(
    api: httpx.AsyncClient, sessionmaker: Sessions, case: str
) -> None:
    assert (await api.post(RUNS.format("hygiene"), json=report())).status_code == 201
    before = await count(sessionmaker, AgentRun)
    agent, body, status, phrase = BAD_REPORTS[case]
    if isinstance(body, str):
        headers = {"Content-Type": "application/json"}
        response = await api.post(RUNS.format(agent), content=body, headers=headers)
    else:
        response = await api.post(RUNS.format(agent), json=body)
    assert response.status_code == status, response.text
    assert phrase in response.json()["detail"]
    assert await count(sessionmaker, AgentRun) == before == 1


async def test_patch_of_a_finished_run_is_a_conflict(
    api: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    run_id = (await api.post(RUNS.format("hygiene"), json=report())).json()["id"]
    update = {"status": "failed", "completed_at": ago(0.1), "error": "late"}
    response = await api.patch(f"{RUNS.format('hygiene')}/{run_id}", json=update)
    assert response.status_code == 409, response.text
    assert response.json()["detail"] == f"run {run_id} already ended (completed)"
    [row] = await stored(sessionmaker)
    assert (row.status, row.error, row.records_processed) == ("completed", None, 20)


async def test_patch_of_another_agents_run_is_not_found(
    api: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    run_id = (await api.post(RUNS.format("hygiene"), json=running())).json()["id"]
    update = {"status": "completed", "completed_at": ago(0.1), "records_processed": 1}
    response = await api.patch(f"{RUNS.format('researcher')}/{run_id}", json=update)
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == f"agent 'researcher' has no run {run_id}"
    missing = await api.patch(f"{RUNS.format('hygiene')}/{run_id + 100}", json=update)
    assert missing.status_code == 404
    [row] = await stored(sessionmaker)
    assert (row.agent_name, row.status, row.completed_at) == ("hygiene", "running", None)


async def test_bad_patches_are_refused_and_change_nothing(
    api: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    started = ago(2)
    created = await api.post(RUNS.format("hygiene"), json=running(started_at=started))
    run_id = created.json()["id"]
    url = f"{RUNS.format('hygiene')}/{run_id}"
    bad = {
        "before the start": (
            {"status": "completed", "completed_at": ago(5)},
            422,
            "completed_at is before the run's started_at",
        ),
        "in the future": (
            {"status": "completed", "completed_at": FUTURE},
            422,
            "completed_at is in the future",
        ),
        "back to running": ({"status": "running", "completed_at": ago(1)}, 422, "status"),
        "naive": (
            {"status": "completed", "completed_at": "2030-01-01T00:00:00"},
            422,
            "completed_at: Input should have timezone info",
        ),
        "negative records": (
            {"status": "completed", "completed_at": ago(1), "records_processed": -5},
            422,
            "records_processed",
        ),
        "no completed_at": ({"status": "failed"}, 422, "completed_at: Field required"),
    }
    for case, (body, status, phrase) in bad.items():
        response = await api.patch(url, json=body)
        assert response.status_code == status, (case, response.text)
        assert phrase in response.json()["detail"], case
    zero = await api.patch(f"{RUNS.format('hygiene')}/0", json=bad["before the start"][0])
    assert zero.status_code == 422, zero.text
    [row] = await stored(sessionmaker)
    assert (row.status, row.completed_at, row.records_processed) == ("running", None, None)


async def test_a_viewer_key_cannot_report_runs(settings: Settings, sessionmaker: Sessions) -> None:
    async with api_client(settings, key=VIEWER_KEY) as viewer:
        response = await viewer.post(RUNS.format("hygiene"), json=report())
        assert response.status_code == 403, response.text
        assert "needs the operator role" in response.json()["detail"]
        assert (await viewer.patch(f"{RUNS.format('hygiene')}/1", json={})).status_code == 403
        assert (await viewer.get(RUNS.format("hygiene"))).status_code == 200
    async with api_client(settings, key=None) as anonymous:
        assert (await anonymous.post(RUNS.format("hygiene"), json=report())).status_code == 401
    assert await count(sessionmaker, AgentRun) == 0


async def test_health_reflects_ingested_runs(
    api: httpx.AsyncClient, sessionmaker: Sessions
) -> None:
    for i in range(10):
        failed = i % 5 in (1, 3)  # 4 of 10
        body = report(
            status="failed" if failed else "completed",
            started_at=ago(60 * (i + 1)),
            completed_at=ago(60 * (i + 1) - 2),
            records_processed=DROP if failed else 20,
            error=f"timeout {i}" if failed else None,
        )
        assert (await api.post(RUNS.format("hygiene"), json=body)).status_code == 201
    assert await count(sessionmaker, AgentRun) == 10

    response = await api.get(HEALTH)
    assert response.status_code == 200, response.text
    agents = {a["agent_name"]: a for a in response.json()["agents"]}
    hygiene = agents["hygiene"]
    assert hygiene["status"] == "failing"
    assert hygiene["error_rate"] == pytest.approx(0.4)
    assert (hygiene["runs_last_24h"], hygiene["errors_last_24h"]) == (10, 4)
    assert hygiene["avg_records_per_run"] == pytest.approx(20)
    assert hygiene["last_error"] == "timeout 1"
    assert {agents[n]["status"] for n in ("prospector", "researcher", "outreach")} == {"unknown"}
    assert response.json()["status"] == "failing"
