"""Starting work over the API is safe to retry: a wait that ends first answers 202 with the
cycle to follow, never a 5xx, and the same ``Idempotency-Key`` lands on the same work."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from orchestrator.settings import Settings
from tests.helpers.api import api_client
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import ledger, running, sweep, wait_closed, wait_until, with_handoffs
from worker import build_worker

RUN = "/api/v1/orchestrator/run"


async def test_a_wait_that_ends_first_is_202_running_and_the_cycle_can_be_polled(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    async with (
        build_worker(client, sessionmaker, worker_settings),
        api_client(worker_settings, client) as api,
    ):
        started = await api.post(RUN, params={"mode": "full", "wait": "true", "wait_seconds": 0.1})
        body = started.json()
        await wait_until(lambda: _status_is(api, body["workflow_id"], "completed"))
        polled = (await api.get(f"/api/v1/orchestrator/cycles/{body['workflow_id']}")).json()
    assert started.status_code == 202, started.text
    assert body["status"] == "running" and body["result"] is None
    assert polled["mode"] == "full" and polled["result"]["mode"] == "full"
    assert polled["web_ui_url"].endswith(body["workflow_id"])


async def test_waits_below_a_tenth_of_a_second_or_past_ten_minutes_are_422(
    client: Client, worker_settings: Settings
) -> None:
    async with api_client(worker_settings, client) as api:
        answers = [
            await api.post(RUN, params={"wait": "true", "wait_seconds": w})
            for w in ("5e-324", "0.05", "601")
        ]
    assert [a.status_code for a in answers] == [422, 422, 422]


async def test_the_same_key_lands_on_the_same_cycle_and_another_request_with_it_is_422(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    key = {"Idempotency-Key": f"nightly-{uuid.uuid4().hex}"}
    async with (
        build_worker(client, sessionmaker, worker_settings),
        api_client(worker_settings, client) as api,
    ):
        first = await api.post(RUN, params={"mode": "monitor"}, headers=key)
        again = await api.post(RUN, params={"mode": "monitor"}, headers=key)
        done = await api.post(RUN, params={"mode": "monitor", "wait": "true"}, headers=key)
        other = await api.post(RUN, params={"mode": "validate"}, headers=key)
        fresh = await api.post(
            RUN, params={"mode": "monitor"}, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
    ids = {r.json()["workflow_id"] for r in (first, again, done)}
    assert [r.status_code for r in (first, again, done)] == [202, 202, 202]
    assert len(ids) == 1
    assert done.json()["status"] == "completed"
    assert other.status_code == 422 and "another request" in other.json()["detail"]
    assert fresh.json()["workflow_id"] not in ids
    runs = [w async for w in client.list_workflows(f"WorkflowId = '{ids.pop()}'")]
    assert len(runs) == 1  # one cycle however often it was asked for


async def test_report_generation_with_a_key_runs_once_and_a_short_wait_is_202(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    path = f"/api/v1/orchestrator/reports/{day}/generate"
    key = {"Idempotency-Key": f"report-{uuid.uuid4().hex}"}
    async with (
        build_worker(client, sessionmaker, worker_settings),
        api_client(worker_settings, client) as api,
    ):
        short = await api.post(path, params={"wait_seconds": 0.1}, headers=key)
        done = await api.post(path, headers=key)
    assert short.status_code in (201, 202), short.text
    if short.status_code == 202:
        assert short.json()["status"] == "running"
    assert done.status_code == 201 and done.json()["date"] == day


async def test_handing_a_prospect_off_again_with_the_same_key_answers_the_same_handoff(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=5))
    key = {"Idempotency-Key": f"hand-{uuid.uuid4().hex}"}
    # the dev server is shared by both databases' runs: a fresh key for each
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        first = await api.post("/api/v1/prospects/5/handoff", headers=key)
        await wait_closed(client, 5)
        again = await api.post("/api/v1/prospects/5/handoff", headers=key)
        unkeyed = await api.post("/api/v1/prospects/5/handoff")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert unkeyed.status_code == 409
    assert sum(agents["hygiene"].work.values()) == 1


async def test_an_unknown_cycle_is_404(client: Client, worker_settings: Settings) -> None:
    async with api_client(worker_settings, client) as api:
        answer = await api.get("/api/v1/orchestrator/cycles/no-such-cycle")
    assert answer.status_code == 404 and "no-such-cycle" in answer.json()["detail"]


async def _status_is(api, workflow_id: str, status: str) -> bool:  # type: ignore[no-untyped-def]
    answer = await api.get(f"/api/v1/orchestrator/cycles/{workflow_id}")
    return answer.status_code == 200 and answer.json()["status"] == status


async def test_a_retried_handoff_retry_with_the_same_key_restarts_it_once(
    client: Client, sessionmaker, agent_sessionmaker, worker_settings: Settings, agents
) -> None:
    settings = with_handoffs(worker_settings, agent_max_attempts=1)
    hygiene = agents["hygiene"]
    hygiene.fail_first, hygiene.gate = 1, None
    await add(agent_sessionmaker, *prospect("identified", pid=431))
    key = {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    async with running(client, sessionmaker, settings, agents), api_client(settings, client) as api:
        await sweep(client, settings)
        await wait_closed(client, 431)
        [failed] = await ledger(sessionmaker, 431)
        url = f"/api/v1/handoffs/{failed.id}/retry"
        first = await api.post(url, headers=key)
        again = await api.post(url, headers=key)  # while it runs, or once it has ended
        await wait_closed(client, 431)
        after = await api.post(url, headers=key)
    assert [r.status_code for r in (first, again, after)] == [202, 202, 202]
    assert {r.json()["action"] for r in (first, again, after)} == {"restarted"}
    rows = await ledger(sessionmaker, 431)
    assert (rows[0].status, rows[0].attempt) == ("completed", 2)  # restarted once
    assert [c.attempt for c in hygiene.calls] == [1, 2]
