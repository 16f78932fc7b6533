"""The handoff endpoints through ASGI, against real databases and a real Temporal dev server:
the ledger (filters, keyset pages), a prospect's live handoff, and the operator actions
(retry, cancel) and the agents' completion callback, each onto real handoff workflows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    Interceptor,
    OutboundInterceptor,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)

from db.models import Handoff, RecordLock
from orchestrator.settings import Settings
from pipeline.handoffs import handoff_id, handoff_workflow_id
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.api import api_client
from tests.helpers.factories import add, held_lease, prospect
from tests.helpers.handoffs import (
    ledger,
    locks,
    running,
    sweep,
    wait_closed,
    wait_until,
    with_handoffs,
)

HANDOFFS = "/api/v1/handoffs"
RUN = "/api/v1/orchestrator/run"
CHAIN = [("outreach", "research_complete"), ("researcher", "scored"), ("hygiene", "identified")]
"""One prospect's chain from identified to in_sequence, newest handoff first."""
DONE = {"status": "completed", "records_processed": 1, "new_status": "scored"}


def prospect_url(pid: int | str) -> str:
    return f"/api/v1/prospects/{pid}/handoff"


@asynccontextmanager
async def gated(agent: FakeAgent) -> AsyncIterator[asyncio.Event]:
    """``agent`` waits until the block ends (or the test sets the gate earlier)."""
    gate = agent.gate = asyncio.Event()
    try:
        yield gate
    finally:
        gate.set()


async def listed(api: httpx.AsyncClient, **params: object) -> dict[str, Any]:
    response = await api.get(HANDOFFS, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def live(api: httpx.AsyncClient, pid: int) -> dict[str, Any] | None:
    response = await api.get(prospect_url(pid))
    if response.status_code != 200:
        return None
    return response.json()["live"]


async def live_in(api: httpx.AsyncClient, pid: int, status: str) -> bool:
    state = await live(api, pid)
    return state is not None and state["status"] == status


async def ids(sessionmaker, pid: int) -> list[str]:
    return [row.id for row in await ledger(sessionmaker, pid)]


class DescribeTogether(Interceptor):
    """Makes concurrent API requests deterministic: each ``describe`` of a workflow waits
    until ``parties`` of them have been answered, so all see the same state before any acts."""

    def __init__(self, parties: int) -> None:
        self.barrier = asyncio.Barrier(parties)

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        barrier = self.barrier

        class Outbound(OutboundInterceptor):
            async def describe_workflow(
                self, input: DescribeWorkflowInput
            ) -> WorkflowExecutionDescription:
                description = await super().describe_workflow(input)
                await asyncio.wait_for(barrier.wait(), 10)
                return description

        return Outbound(next)


# --- GET /handoffs ------------------------------------------------------------------------


async def test_ledger_lists_a_chain_newest_first_filtered_and_paged(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=401))
    async with running(client, sessionmaker, worker_settings, agents):
        await sweep(client, worker_settings)
        await wait_closed(client, 401)
    chain = list(reversed(await ids(sessionmaker, 401)))  # newest first
    async with api_client(worker_settings, client) as api:
        body = await listed(api)
        assert [(i["to_agent"], i["from_state"]) for i in body["items"]] == CHAIN
        assert [i["id"] for i in body["items"]] == chain
        assert {(i["prospect_id"], i["status"], i["attempt"]) for i in body["items"]} == {
            (401, "completed", 1)
        }
        assert body["next_cursor"] is None

        first = await listed(api, limit=2)
        assert [i["id"] for i in first["items"]] == chain[:2]
        assert first["next_cursor"]
        rest = await listed(api, limit=2, cursor=first["next_cursor"])
        assert [i["id"] for i in rest["items"]] == chain[2:]
        assert rest["next_cursor"] is None

        # a failed researcher handoff of another prospect, the newest row of all
        now = datetime.now(UTC)
        decoy = Handoff(
            id=handoff_id(402, "scored", now),
            prospect_id=402,
            from_state="scored",
            state_entered_at=now,
            to_agent="researcher",
            status="failed",
            attempt=1,
            created_at=now,
            updated_at=now,
            finished_at=now,
        )
        await add(agent_sessionmaker, decoy)
        assert [i["id"] for i in (await listed(api))["items"]] == [decoy.id, *chain]
        assert [i["id"] for i in (await listed(api, status="completed"))["items"]] == chain
        assert [i["id"] for i in (await listed(api, agent="researcher"))["items"]] == [
            decoy.id,
            chain[1],
        ]
        both = await listed(api, agent="researcher", status="completed")
        assert [i["id"] for i in both["items"]] == [chain[1]]
        assert [i["id"] for i in (await listed(api, prospect_id=401))["items"]] == chain
        assert [i["id"] for i in (await listed(api, prospect_id=402))["items"]] == [decoy.id]
        assert (await listed(api, status="stalled"))["items"] == []


async def test_ledger_refuses_bad_filters_and_cursors(
    client: Client, sessionmaker, worker_settings: Settings
) -> None:
    async with api_client(worker_settings, client) as api:
        bogus = await api.get(HANDOFFS, params={"status": "bogus"})
        assert bogus.status_code == 422
        assert "status" in bogus.json()["detail"] and "completed" in bogus.json()["detail"]
        zero = await api.get(HANDOFFS, params={"limit": 0})
        assert zero.status_code == 422 and "limit" in zero.json()["detail"]
        for cursor in ("garbage", "yesterday|1:identified:0"):
            bad = await api.get(HANDOFFS, params={"cursor": cursor})
            assert bad.status_code == 422, cursor
            assert "cursor" in bad.json()["detail"]


# --- GET /prospects/{id}/handoff -----------------------------------------------------------


async def test_prospect_never_handed_off_is_404_and_id_zero_is_422(
    client: Client, agent_sessionmaker, worker_settings: Settings
) -> None:
    await add(agent_sessionmaker, *prospect("in_sequence", pid=410))
    async with api_client(worker_settings, client) as api:
        missing = await api.get(prospect_url(410))
        assert missing.status_code == 404
        assert "410" in missing.json()["detail"] and "never" in missing.json()["detail"]
        zero = await api.get(prospect_url(0))
        assert zero.status_code == 422 and "prospect_id" in zero.json()["detail"]


async def test_stalled_handoff_shows_its_live_state_and_history(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, stall_after=timedelta(seconds=1))
    await add(agent_sessionmaker, *prospect("identified", pid=411))
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, client) as api,
    ):
        async with gated(agents["hygiene"]):
            await sweep(client, settings)
            await wait_until(lambda: live_in(api, 411, "stalled"), within=10)
            response = await api.get(prospect_url(411))
            assert response.status_code == 200
            body = response.json()
            [row] = await ledger(sessionmaker, 411)
            state = body["live"]
            assert (state["status"], state["to_agent"]) == ("stalled", "hygiene")
            assert (state["handoff_id"], state["prospect_id"]) == (row.id, 411)
            assert "no answer" in state["detail"]
            assert body["workflow_id"] == handoff_workflow_id(411)
            assert "handoff-411" in body["web_ui_url"]
            assert [(h["id"], h["status"], h["to_agent"]) for h in body["history"]] == [
                (row.id, "stalled", "hygiene")
            ]
        await wait_closed(client, 411)
        after = (await api.get(prospect_url(411))).json()
        assert after["live"] is None
        assert [(h["to_agent"], h["status"]) for h in after["history"]] == [
            ("outreach", "completed"),
            ("researcher", "completed"),
            ("hygiene", "completed"),
        ]


# --- POST /handoffs/{id}/retry -------------------------------------------------------------


async def test_retry_signals_a_blocked_handoff_until_the_lease_is_free(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, blocked_retry_interval=timedelta(hours=1))
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=420),
        held_lease(420, "researcher"),
    )
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, client) as api,
    ):
        await sweep(client, settings)
        await wait_until(lambda: live_in(api, 420, "blocked"), within=10)
        [hid] = await ids(sessionmaker, 420)
        before = await live(api, 420)
        assert before is not None and before["blocked_by"] == "researcher"

        signalled = await api.post(f"{HANDOFFS}/{hid}/retry")
        assert signalled.status_code == 202, signalled.text
        assert signalled.json() == {
            "handoff_id": hid,
            "action": "signalled",
            "workflow_id": handoff_workflow_id(420),
        }

        async def tried_again() -> bool:
            state = await live(api, 420)
            return state is not None and state["updated_at"] != before["updated_at"]

        await wait_until(tried_again, within=10)  # the lease was tried again, and refused
        state = await live(api, 420)
        assert state is not None
        assert (state["status"], state["blocked_by"]) == ("blocked", "researcher")
        assert [r.status for r in await ledger(sessionmaker, 420)] == ["blocked"]
        assert agents["hygiene"].calls == []

        async with sessionmaker() as session:
            [lock] = await locks(sessionmaker)
            await session.delete(await session.get(RecordLock, lock.id))
            await session.commit()
        again = await api.post(f"{HANDOFFS}/{hid}/retry")
        assert again.status_code == 202 and again.json()["action"] == "signalled"
        await wait_closed(client, 420)

        rows = await ledger(sessionmaker, 420)
        assert [(r.to_agent, r.status) for r in rows] == [
            ("hygiene", "completed"),
            ("researcher", "completed"),
            ("outreach", "completed"),
        ]
        assert await prospect_status(sessionmaker, 420) == "in_sequence"
        assert await locks(sessionmaker) == []

        completed = await api.post(f"{HANDOFFS}/{hid}/retry")
        assert completed.status_code == 409
        assert "only blocked, failed or cancelled" in completed.json()["detail"]
        unknown = await api.post(f"{HANDOFFS}/420:identified:1/retry")
        assert unknown.status_code == 404 and "no handoff" in unknown.json()["detail"]


async def test_retry_restarts_a_failed_handoff_which_then_completes(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, agent_max_attempts=1)
    hygiene = agents["hygiene"]
    hygiene.fail_first = 1
    await add(agent_sessionmaker, *prospect("identified", pid=430))
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, client) as api,
    ):
        await sweep(client, settings)
        await wait_closed(client, 430)
        [row] = await ledger(sessionmaker, 430)
        assert (row.status, row.attempt) == ("failed", 1)
        assert hygiene.work == {}

        response = await api.post(f"{HANDOFFS}/{row.id}/retry")
        assert response.status_code == 202, response.text
        assert response.json() == {
            "handoff_id": row.id,
            "action": "restarted",
            "workflow_id": handoff_workflow_id(430),
        }
        await wait_closed(client, 430)

    rows = await ledger(sessionmaker, 430)
    assert [(r.to_agent, r.status, r.attempt) for r in rows] == [
        ("hygiene", "completed", 2),
        ("researcher", "completed", 1),
        ("outreach", "completed", 1),
    ]
    assert rows[0].id == row.id
    assert [c.attempt for c in hygiene.calls] == [1, 2]
    assert hygiene.work == {(430, "identified"): 1}
    assert await prospect_status(sessionmaker, 430) == "in_sequence"


async def test_a_blocked_handoff_cancelled_then_retried_runs_again(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, blocked_retry_interval=timedelta(hours=1))
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=431),
        held_lease(431, "outreach"),
    )
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, client) as api,
    ):
        await sweep(client, settings)
        await wait_until(lambda: live_in(api, 431, "blocked"), within=10)
        [hid] = await ids(sessionmaker, 431)
        cancelled = await api.post(f"{HANDOFFS}/{hid}/cancel")
        assert cancelled.status_code == 202, cancelled.text
        with pytest.raises(WorkflowFailureError):
            await client.get_workflow_handle(handoff_workflow_id(431)).result()
        [row] = await ledger(sessionmaker, 431)
        assert (row.status, row.attempt) == ("cancelled", 1)
        assert [lock.run_id for lock in await locks(sessionmaker)] == ["someone-else"]

        async with sessionmaker() as session:
            await session.delete(await session.get(RecordLock, (await locks(sessionmaker))[0].id))
            await session.commit()
        retried = await api.post(f"{HANDOFFS}/{hid}/retry")
        assert retried.status_code == 202 and retried.json()["action"] == "restarted"
        await wait_closed(client, 431)
    rows = await ledger(sessionmaker, 431)
    assert [(r.to_agent, r.status, r.attempt) for r in rows] == [
        ("hygiene", "completed", 2),
        ("researcher", "completed", 1),
        ("outreach", "completed", 1),
    ]
    assert agents["hygiene"].work == {(431, "identified"): 1}
    assert await locks(sessionmaker) == []


async def test_concurrent_retries_of_a_failed_handoff_restart_it_once(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, agent_max_attempts=1)
    agents["hygiene"].fail_first = 1
    await add(agent_sessionmaker, *prospect("identified", pid=432))
    together = DescribeTogether(parties=3)
    racing = Client(**{**client.config(), "interceptors": [together]})
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, racing) as api,
    ):
        await sweep(client, settings)
        await wait_closed(client, 432)
        [hid] = await ids(sessionmaker, 432)
        answers = await asyncio.gather(
            *(api.post(f"{HANDOFFS}/{hid}/retry") for _ in range(3)), return_exceptions=True
        )
        await wait_closed(client, 432)
    assert agents["hygiene"].work == {(432, "identified"): 1}
    statuses = [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers]
    assert sorted(statuses, key=str) == [202, 409, 409]


async def test_retry_revives_a_handoff_whose_workflow_was_terminated(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = with_handoffs(worker_settings, blocked_retry_interval=timedelta(hours=1))
    await add(
        agent_sessionmaker,
        *prospect("identified", pid=433),
        held_lease(433, "outreach"),
    )
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, client) as api,
    ):
        await sweep(client, settings)
        await wait_until(lambda: live_in(api, 433, "blocked"), within=10)
        [hid] = await ids(sessionmaker, 433)
        await client.get_workflow_handle(handoff_workflow_id(433)).terminate("ops")
        async with sessionmaker() as session:
            await session.delete(await session.get(RecordLock, (await locks(sessionmaker))[0].id))
            await session.commit()
        assert (await sweep(client, settings)).handoffs.pending == 0  # type: ignore[union-attr]
        response = await api.post(f"{HANDOFFS}/{hid}/retry")
        if response.status_code == 202:
            await wait_closed(client, 433)
    assert response.status_code == 202, response.text
    assert await prospect_status(sessionmaker, 433) == "in_sequence"


# --- POST /handoffs/{id}/cancel ------------------------------------------------------------


async def test_cancel_ends_a_running_handoff_and_releases_its_lease(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=440))
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        async with gated(agents["hygiene"]) as gate:
            await sweep(client, worker_settings)
            await wait_until(lambda: agents["hygiene"].calls, within=10)
            await wait_until(lambda: live_in(api, 440, "running"), within=10)
            [hid] = await ids(sessionmaker, 440)

            running_retry = await api.post(f"{HANDOFFS}/{hid}/retry")
            assert running_retry.status_code == 409
            assert "is running" in running_retry.json()["detail"]

            response = await api.post(f"{HANDOFFS}/{hid}/cancel")
            assert response.status_code == 202, response.text
            assert response.json()["workflow_id"] == handoff_workflow_id(440)
            handle = client.get_workflow_handle(handoff_workflow_id(440))
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
            assert [r.status for r in await ledger(sessionmaker, 440)] == ["cancelled"]
            assert await locks(sessionmaker) == []
            # the agent (which does not heartbeat) finishes late; the ledger keeps the cancel
            gate.set()
            await wait_until(lambda: agents["hygiene"].work, within=10)

        assert [r.status for r in await ledger(sessionmaker, 440)] == ["cancelled"]
        assert await locks(sessionmaker) == []
        finished = await api.post(f"{HANDOFFS}/{hid}/cancel")
        assert finished.status_code == 409 and "not running" in finished.json()["detail"]
        unknown = await api.post(f"{HANDOFFS}/440:identified:1/cancel")
        assert unknown.status_code == 404


# --- POST /handoffs/{id}/complete ----------------------------------------------------------


async def test_complete_refuses_unknown_invalid_and_finished_handoffs(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=450))
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        await sweep(client, worker_settings)
        await wait_closed(client, 450)
        hid = (await ids(sessionmaker, 450))[0]

        unknown = await api.post(f"{HANDOFFS}/450:identified:1/complete", json=DONE)
        assert unknown.status_code == 404
        weird = await api.post(f"{HANDOFFS}/{hid}/complete", json={"status": "weird"})
        assert weird.status_code == 422
        assert weird.json()["detail"].startswith("invalid agent result")
        not_json = await api.post(f"{HANDOFFS}/{hid}/complete", content=b"not json")
        assert not_json.status_code == 422
        finished = await api.post(f"{HANDOFFS}/{hid}/complete", json=DONE)
        assert finished.status_code == 409
        assert "not waiting for a result" in finished.json()["detail"]
    assert [r.status for r in await ledger(sessionmaker, 450)] == ["completed"] * 3


async def test_complete_refuses_a_temporal_handoff_that_waits_for_no_callback(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=451))
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        try:
            async with gated(agents["hygiene"]):
                await sweep(client, worker_settings)
                await wait_until(lambda: agents["hygiene"].calls, within=10)
                await wait_until(lambda: live_in(api, 451, "running"), within=10)
                [hid] = await ids(sessionmaker, 451)
                response = await api.post(f"{HANDOFFS}/{hid}/complete", json=DONE)
                assert response.status_code == 409, response.text
        finally:
            await wait_closed(client, 451)


# --- POST /orchestrator/run?mode=handoffs ---------------------------------------------------


async def test_manual_handoff_sweep_starts_every_qualifying_prospect(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    qualifying = {
        460: prospect("identified", pid=460),
        461: prospect("needs_scoring", pid=461),
        462: prospect("scored", tier="A1", pid=462),
        463: prospect("research_complete", tier="B", pid=463),
        464: prospect("ready_for_outreach", pid=464),
    }
    others = [
        prospect("scored", tier="C", pid=465),
        prospect("identified", deleted=True, pid=466),
        prospect("research_complete", tier="A1", email=None, pid=467),
        prospect("in_sequence", pid=468),
    ]
    for rows in [*qualifying.values(), *others]:
        await add(agent_sessionmaker, *rows)
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        response = await api.post(RUN, params={"mode": "handoffs", "wait": "true"})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["mode"] == "handoffs"
        sweep_summary = body["result"]["handoffs"]
        assert (sweep_summary["pending"], sweep_summary["started"]) == (5, 5)
        assert (sweep_summary["failed"], sweep_summary["deferred"]) == (0, 0)
        for pid in qualifying:
            await wait_closed(client, pid)
    for pid in qualifying:
        assert await prospect_status(sessionmaker, pid) == "in_sequence"
    for pid in range(465, 469):
        assert await ledger(sessionmaker, pid) == []
