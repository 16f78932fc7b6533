"""The circuit breaker and operators' pause on a real Temporal dev server, against real
databases: a failing agent's circuit opens and its handoffs wait; after the cool-down one probe
goes through and its outcome closes or re-opens the circuit; a paused agent's handoffs wait and
a chain stops before it; resuming starts the waiting handoffs at once."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client

from db.commands.controls import deferrals
from db.models import AgentControl, Event, OrchestratorAction, Prospect
from orchestrator.settings import BreakerSettings, HandoffSettings, Settings
from pipeline.handoffs import HandoffStatus, PendingHandoff, handoff_id, handoff_workflow_id
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.api import api_client
from tests.helpers.factories import add, prospect, run
from tests.helpers.handoffs import ledger, run_cycle, running, sweep, wait_closed, wait_until
from workflows.handoff import HandoffInput, HandoffWorkflow
from workflows.types import CycleSummary, HandoffSweepSummary

H = timedelta(hours=1)
AGENTS_URL = "/api/v1/agents"


async def swept(client: Client, settings: Settings) -> tuple[int, int, int]:
    """(pending, started, deferred) of one handoffs sweep."""
    summary = await sweep(client, settings)
    assert summary.handoffs is not None
    sweep_summary: HandoffSweepSummary = summary.handoffs
    return sweep_summary.pending, sweep_summary.started, sweep_summary.deferred


async def control(sessionmaker, agent: str) -> AgentControl | None:
    async with sessionmaker() as session:
        return await session.get(AgentControl, agent)


async def actions(sessionmaker, agent: str) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OrchestratorAction.action)
            .where(OrchestratorAction.agent_name == agent, OrchestratorAction.prospect_id.is_(None))
            .order_by(OrchestratorAction.id)
        )
        return list(rows)


async def event_kinds(sessionmaker, agent: str) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Event.kind).where(Event.agent_name == agent).order_by(Event.id)
        )
        return list(rows)


async def pending_id(sessionmaker, pid: int) -> str:
    async with sessionmaker() as session:
        p = await session.get(Prospect, pid)
        assert p is not None
        return handoff_id(pid, p.status, p.status_changed_at)


def failing_runs(agent: str, now: datetime) -> list[object]:
    """3 of 5 runs failed in the last hours: 60% errors, failing."""
    return [
        run(agent, "failed" if i % 2 == 0 else "completed", ago=H * (1 + i), now=now)
        for i in range(5)
    ]


def open_circuit(agent: str, since: datetime) -> AgentControl:
    return AgentControl(
        agent_name=agent,
        paused=False,
        circuit_state="open",
        circuit_changed_at=since,
        updated_at=since,
    )


async def agents_by_name(api: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await api.get(AGENTS_URL)
    assert response.status_code == 200, response.text
    return {a["name"]: a for a in response.json()}


# --- the circuit breaker -----------------------------------------------------------------


async def test_failing_agent_opens_its_circuit_then_one_probe_closes_it(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *failing_runs("hygiene", datetime.now(UTC)))
    await add(agent_sessionmaker, *[row for pid in (1, 2, 3) for row in prospect(pid=pid)])

    # open: the monitor sees hygiene failing; handoffs to it wait (default cool-down: 10 min)
    async with running(client, sessionmaker, worker_settings, agents):
        monitor = await run_cycle(client, worker_settings, "monitor")
        assert monitor.health is not None and monitor.health.circuits_opened == ["hygiene"]
        opened = await control(sessionmaker, "hygiene")
        assert opened is not None and opened.circuit_state == "open"
        assert opened.circuit_changed_at is not None and opened.probe_handoff_id is None
        assert await actions(sessionmaker, "hygiene") == ["circuit_opened"]
        assert "circuit_opened" in await event_kinds(sessionmaker, "hygiene")
        async with api_client(worker_settings, client) as api:
            listed = await agents_by_name(api)
        assert listed["hygiene"]["circuit_state"] == "open"
        assert listed["hygiene"]["health"]["status"] == "failing"
        assert listed["hygiene"]["queue_depth"] == 3
        assert {listed[a]["circuit_state"] for a in ("researcher", "outreach")} == {"closed"}

        assert await swept(client, worker_settings) == (3, 0, 3)
        for pid in (1, 2, 3):
            assert await ledger(sessionmaker, pid) == []
        assert agents["hygiene"].calls == []

    # half-open after a 1 s cool-down: exactly one probe, the others wait
    fast = worker_settings.model_copy(
        update={"breaker": BreakerSettings(cooldown=timedelta(seconds=1))}
    )
    changed_at = opened.circuit_changed_at
    await wait_until(lambda: datetime.now(UTC) > changed_at + timedelta(seconds=1.2), within=5)
    hygiene = agents["hygiene"]
    gate = hygiene.gate = asyncio.Event()
    async with running(client, sessionmaker, fast, agents):
        try:
            assert await swept(client, fast) == (3, 1, 2)
            probing = await control(sessionmaker, "hygiene")
            assert probing is not None and probing.circuit_state == "half_open"
            assert probing.probe_handoff_id == await pending_id(sessionmaker, 1)
            await wait_until(lambda: hygiene.calls)
            assert [c.prospect_id for c in hygiene.calls] == [1]
            # while the probe runs, nothing else gets through
            assert await swept(client, fast) == (2, 0, 2)
            assert await ledger(sessionmaker, 2) == [] and await ledger(sessionmaker, 3) == []
        finally:
            gate.set()
        await wait_closed(client, 1)
        closed = await control(sessionmaker, "hygiene")
        assert closed is not None
        assert (closed.circuit_state, closed.probe_handoff_id) == ("closed", None)
        assert await actions(sessionmaker, "hygiene") == [
            "circuit_opened",
            "circuit_half_open",
            "circuit_closed",
        ]

        # closed: the next sweep starts the rest
        assert await swept(client, fast) == (2, 2, 0)
        await wait_closed(client, 2)
        await wait_closed(client, 3)
    assert hygiene.work == {(pid, "identified"): 1 for pid in (1, 2, 3)}
    for pid in (1, 2, 3):
        assert await prospect_status(sessionmaker, pid) == "in_sequence"
    kinds = set(await event_kinds(sessionmaker, "hygiene"))
    assert {"circuit_opened", "circuit_half_open", "circuit_closed"} <= kinds


async def test_failing_probe_reopens_the_circuit(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    settings = worker_settings.model_copy(
        update={"handoffs": HandoffSettings(agent_max_attempts=1)}
    )
    cooled = datetime.now(UTC) - H
    agents["hygiene"].fail_first = 100
    await add(agent_sessionmaker, open_circuit("hygiene", cooled))
    await add(agent_sessionmaker, *prospect(pid=1), *prospect(pid=2))
    async with running(client, sessionmaker, settings, agents):
        assert await swept(client, settings) == (2, 1, 1)
        await wait_closed(client, 1)
        [probe] = await ledger(sessionmaker, 1)
        assert probe.status == HandoffStatus.FAILED.value
        reopened = await control(sessionmaker, "hygiene")
        assert reopened is not None
        assert (reopened.circuit_state, reopened.probe_handoff_id) == ("open", None)
        assert reopened.circuit_changed_at is not None and reopened.circuit_changed_at > cooled
        assert await actions(sessionmaker, "hygiene") == ["circuit_half_open", "circuit_reopened"]
        # the cool-down starts again: nothing goes through
        assert await swept(client, settings) == (1, 0, 1)
    assert [c.prospect_id for c in agents["hygiene"].calls] == [1]
    assert await ledger(sessionmaker, 2) == []
    assert await prospect_status(sessionmaker, 1) == "identified"


async def test_probe_that_never_reaches_the_agent_does_not_hold_the_circuit_half_open(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    """The finder claims prospect 1 as the probe; the prospect is deleted before its handoff
    begins, so the handoff is superseded and no agent is called."""
    await add(agent_sessionmaker, open_circuit("hygiene", datetime.now(UTC) - H))
    await add(agent_sessionmaker, *prospect(pid=1), *prospect(pid=2))
    async with sessionmaker() as session:
        p1 = await session.get(Prospect, 1)
        assert p1 is not None
        entered = p1.status_changed_at
        probe = PendingHandoff(
            prospect_id=1, from_state="identified", state_entered_at=entered, to_agent="hygiene"
        )
        waiting = await deferrals(session, [probe], datetime.now(UTC), timedelta(minutes=10))
        assert waiting == {}
        await session.commit()
    async with agent_sessionmaker() as session:  # the prospector deletes it
        p1 = await session.get(Prospect, 1)
        assert p1 is not None
        p1.deleted_at = datetime.now(UTC)
        await session.commit()
    claimed = await control(sessionmaker, "hygiene")
    assert claimed is not None and claimed.probe_handoff_id == probe.id
    async with running(client, sessionmaker, worker_settings, agents):
        state = await client.execute_workflow(
            HandoffWorkflow.run,
            HandoffInput(pending=probe),
            id=handoff_workflow_id(1),
            task_queue=worker_settings.temporal.task_queue,
        )
        assert state.status is HandoffStatus.SUPERSEDED
        after = await control(sessionmaker, "hygiene")
        assert after is not None
        assert after.circuit_state != "half_open" and after.probe_handoff_id is None
    assert agents["hygiene"].calls == []


# --- pause and resume --------------------------------------------------------------------


def resumed_cycle(detail: str) -> str:
    match = re.search(r"\((cycle-handoffs-resume-[\w-]+)\)", detail)
    assert match, detail
    return match.group(1)


async def test_paused_agent_defers_handoffs_and_resume_starts_them(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect(pid=1), *prospect(pid=2))
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        paused = await api.post(f"{AGENTS_URL}/hygiene/pause", json={"reason": "vendor outage"})
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True
        assert paused.json()["paused_reason"] == "vendor outage"

        assert await swept(client, worker_settings) == (2, 0, 2)
        assert await ledger(sessionmaker, 1) == [] and await ledger(sessionmaker, 2) == []
        assert agents["hygiene"].calls == []
        listed = await agents_by_name(api)
        assert (listed["hygiene"]["paused"], listed["hygiene"]["paused_reason"]) == (
            True,
            "vendor outage",
        )
        assert listed["hygiene"]["queue_depth"] == 2

        resumed = await api.post(f"{AGENTS_URL}/hygiene/resume")
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["paused"], resumed.json()["paused_reason"]) == (False, None)
        cycle: CycleSummary = await client.get_workflow_handle(
            resumed_cycle(resumed.json()["detail"]), result_type=CycleSummary
        ).result()
        assert cycle.handoffs is not None
        assert (cycle.handoffs.started, cycle.handoffs.deferred) == (2, 0)
        await wait_closed(client, 1)
        await wait_closed(client, 2)
    for pid in (1, 2):
        assert await prospect_status(sessionmaker, pid) == "in_sequence"
    assert agents["hygiene"].work == {(1, "identified"): 1, (2, "identified"): 1}
    async with sessionmaker() as session:
        audit = list(
            await session.scalars(
                select(OrchestratorAction)
                .where(
                    OrchestratorAction.agent_name == "hygiene",
                    OrchestratorAction.prospect_id.is_(None),
                )
                .order_by(OrchestratorAction.id)
            )
        )
    assert [(a.action, a.details) for a in audit] == [
        ("agent_paused", {"reason": "vendor outage", "by": "test-operator"}),
        ("agent_resumed", {"by": "test-operator"}),
    ]
    assert {"agent_paused", "agent_resumed"} <= set(await event_kinds(sessionmaker, "hygiene"))


async def test_chain_stops_before_a_paused_agent_and_goes_on_when_resumed(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    await add(agent_sessionmaker, *prospect(pid=1))
    async with (
        running(client, sessionmaker, worker_settings, agents),
        api_client(worker_settings, client) as api,
    ):
        paused = await api.post(f"{AGENTS_URL}/researcher/pause", json={"reason": "quota"})
        assert paused.status_code == 200, paused.text
        assert await swept(client, worker_settings) == (1, 1, 0)
        await wait_closed(client, 1)
        assert await prospect_status(sessionmaker, 1) == "scored"
        assert agents["hygiene"].work == {(1, "identified"): 1}
        assert agents["researcher"].calls == []
        assert [(r.to_agent, r.status) for r in await ledger(sessionmaker, 1)] == [
            ("hygiene", "completed"),
        ]
        assert (await agents_by_name(api))["researcher"]["queue_depth"] == 1
        assert await swept(client, worker_settings) == (1, 0, 1)

        resumed = await api.post(f"{AGENTS_URL}/researcher/resume")
        assert resumed.status_code == 200, resumed.text
        await client.get_workflow_handle(resumed_cycle(resumed.json()["detail"])).result()
        await wait_closed(client, 1)
        assert await prospect_status(sessionmaker, 1) == "in_sequence"
    assert [(r.to_agent, r.status) for r in await ledger(sessionmaker, 1)] == [
        ("hygiene", "completed"),
        ("researcher", "completed"),
        ("outreach", "completed"),
    ]
    assert agents["researcher"].work == {(1, "scored"): 1}


async def test_controls_refuse_unknown_agents_and_bad_input(
    sessionmaker, settings: Settings
) -> None:
    now = datetime.now(UTC)
    async with api_client(settings) as api:
        for action, body in (
            ("pause", {"reason": "x"}),
            ("resume", None),
            ("silence", {"until": (now + H).isoformat()}),
        ):
            response = await api.post(f"{AGENTS_URL}/nobody/{action}", json=body)
            assert response.status_code == 404, (action, response.text)
            assert "unknown agent 'nobody'" in response.json()["detail"]
            assert "hygiene" in response.json()["detail"]

        for body in ({}, {"reason": ""}, {"reason": "x" * 501}):
            response = await api.post(f"{AGENTS_URL}/hygiene/pause", json=body)
            assert response.status_code == 422, (body, response.text)
            assert "reason" in response.json()["detail"]

        naive = (now + H).replace(tzinfo=None).isoformat()
        for until in (naive, (now + timedelta(days=31)).isoformat(), (now - H).isoformat()):
            response = await api.post(f"{AGENTS_URL}/hygiene/silence", json={"until": until})
            assert response.status_code == 422, (until, response.text)
            assert "until" in response.json()["detail"]
        at_limit = await api.post(
            f"{AGENTS_URL}/hygiene/silence",
            json={"until": (now + timedelta(days=29, hours=23)).isoformat()},
        )
        assert at_limit.status_code == 200, at_limit.text
    hygiene = await control(sessionmaker, "hygiene")
    assert hygiene is not None and hygiene.paused is False
    assert await actions(sessionmaker, "hygiene") == ["agent_silenced"]
