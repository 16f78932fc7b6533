"""A prospect's journey and the bulk retry, through ASGI onto real handoff workflows (a real
Temporal dev server, stand-in agents) on both databases: three agents, one failure and its
retry, read back entry by entry; then every failed handoff since an hour ago retried as one
action, with the same worker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client

from db.models import AgentRun, Alert, Handoff, OrchestratorAction, RecordLock, StateViolation
from orchestrator.settings import Settings
from tests.helpers.agents import FakeAgent, prospect_status
from tests.helpers.api import api_client
from tests.helpers.factories import add, ledger_entry, prospect
from tests.helpers.handoffs import ledger, running, sweep, wait_closed, with_handoffs

WAIT = 30.0


async def closed(client: Client, pid: int) -> None:
    await asyncio.wait_for(wait_closed(client, pid), WAIT)


def entry(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["kind"], e["status"], e["agent"], e["attempt"])


def after_the_journey(pid: int, at: datetime) -> list[object]:
    """A violation, an alert naming the prospect (and one naming another), a lease."""
    second = timedelta(seconds=1)

    def alert(about: int, message: str) -> Alert:
        return Alert(
            fingerprint=f"test:{about}",
            kind="test",
            agent_name="outreach",
            severity="warning",
            status="open",
            message=message,
            details={"prospect_id": about},
            first_seen=at + second,
            last_seen=at + second,
        )

    return [
        StateViolation(
            prospect_id=pid,
            kind="in_sequence_no_sequence",
            state="in_sequence",
            detail="no active sequence",
            first_seen=at,
            last_seen=at,
        ),
        alert(pid, "outreach is slow for it"),
        alert(pid + 1, "someone else's"),
        RecordLock(
            prospect_id=pid,
            agent_name="outreach",
            run_id="their-run",
            acquired_at=at + 2 * second,
            expires_at=at + timedelta(hours=1),
        ),
    ]


async def test_journey_through_three_agents_with_a_failure_and_its_retry_then_a_bulk_retry(
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    agents: dict[str, FakeAgent],
) -> None:
    pid = 8201
    settings = with_handoffs(worker_settings, agent_max_attempts=1)
    agents["researcher"].fail_first = 1
    await add(agent_sessionmaker, *prospect("identified", pid=pid))
    async with (
        running(client, sessionmaker, settings, agents),
        api_client(settings, client) as api,
    ):
        await sweep(client, settings)
        await closed(client, pid)
        failed = [r for r in await ledger(sessionmaker, pid) if r.status == "failed"]
        assert [(r.to_agent, r.attempt) for r in failed] == [("researcher", 1)]
        retried = await api.post(f"/api/v1/handoffs/{failed[0].id}/retry")
        assert retried.status_code == 202 and retried.json()["action"] == "restarted"
        await closed(client, pid)
        assert await prospect_status(agent_sessionmaker, pid) == "in_sequence"
        # the researcher's runs, as its SDK records them (the stand-in agent does not)
        rows = {r.to_agent: r for r in await ledger(sessionmaker, pid)}
        research = rows["researcher"]
        await add(
            agent_sessionmaker,
            *(
                AgentRun(
                    agent_name="researcher",
                    status=status,
                    started_at=research.created_at,
                    completed_at=research.updated_at,
                    handoff_id=research.id,
                )
                for status in ("failed", "completed")
            ),
        )
        later = datetime.now(UTC) + timedelta(seconds=1)
        await add(agent_sessionmaker, *after_the_journey(pid, later))
        response = await api.get(f"/api/v1/prospects/{pid}")
        # the same worker serves the bulk retry (its start is much of each test's time)
        await bulk_retry_of_every_match(api, client, sessionmaker, agent_sessionmaker, agents)
    assert response.status_code == 200, response.text
    journey = response.json()
    assert journey["prospect"]["status"] == "in_sequence"
    assert (journey["prospect"]["tier"], journey["prospect"]["has_contact_email"]) == ("A1", True)
    assert journey["next"] == {
        "admitted": False,
        "trigger": None,
        "agent": None,
        "reason": f"prospect {pid} is 'in_sequence', a state no trigger hands on",
    }
    assert (journey["truncated"], journey["timeline_limit"]) == (False, 500)
    timeline = journey["timeline"]
    times = [e["at"] for e in timeline]
    assert times == sorted(times)
    runs = [e for e in timeline if e["kind"] == "agent_run"]
    assert sorted((e["status"], e["handoff_id"]) for e in runs) == [
        ("completed", research.id),
        ("failed", research.id),
    ]
    assert [entry(e) for e in timeline if e["kind"] != "agent_run"] == [
        ("state_entered", "identified", None, None),
        ("handoff", "completed", "hygiene", 1),
        ("state_entered", "scored", None, None),
        ("action", "handoff_executed", "hygiene", 1),
        ("handoff", "completed", "researcher", 2),
        ("action", "handoff_failed", "researcher", 1),
        ("state_entered", "research_complete", None, None),
        ("action", "handoff_executed", "researcher", 2),
        ("handoff", "completed", "outreach", 1),
        ("state_entered", "in_sequence", None, None),
        ("action", "handoff_executed", "outreach", 1),
        ("violation", "open", None, None),
        ("alert", "open", "outreach", None),
        ("lease", None, "outreach", None),
    ]
    assert timeline[-1]["detail"]["holder"] == "their-run"
    assert "someone else's" not in str(timeline)  # the alert naming another prospect
    handoffs = [e for e in timeline if e["kind"] == "handoff"]
    assert [e["handoff_id"] for e in handoffs] == [
        rows[a].id for a in ("hygiene", "researcher", "outreach")
    ]
    assert all(e["web_ui_url"].endswith(f"/workflows/handoff-{pid}") for e in handoffs)


def failed_claim(pid: int, state: str, entered: datetime, agent: str, *, ago: timedelta) -> Handoff:
    return ledger_entry(pid, state, status="failed", agent=agent, ago=ago, entered=entered)


async def bulk_retry_of_every_match(
    api: httpx.AsyncClient,
    client: Client,
    sessionmaker,
    agent_sessionmaker,
    agents: dict[str, FakeAgent],
) -> None:
    """Every failed handoff since an hour ago retried at once: each prospect's newest match
    started, the rest not, saying why (an older entry of a prospect retried, a paused agent);
    one audit row per bulk retry."""
    p, minute = 8300, timedelta(minutes=1)
    entered = datetime.now(UTC) - 10 * minute
    rows: list[object] = []
    for pid in (p + 1, p + 2, p + 3, p + 6):
        rows += prospect("identified", pid=pid, entered=entered)
    rows += prospect("scored", tier="A1", pid=p + 4, entered=entered)
    hygiene = [
        failed_claim(p + i, "identified", entered, "hygiene", ago=(4 - i) * minute)
        for i in (1, 2, 3)
    ]
    older = failed_claim(p + 2, "needs_scoring", entered - 60 * minute, "hygiene", ago=9 * minute)
    held = failed_claim(p + 4, "scored", entered, "researcher", ago=5 * minute)
    stale = failed_claim(p + 6, "identified", entered, "hygiene", ago=timedelta(days=2))
    await add(agent_sessionmaker, *rows, *hygiene, older, held, stale)
    bulk = "/api/v1/handoffs/retry"
    paused = await api.post("/api/v1/agents/researcher/pause", json={"reason": "test"})
    assert paused.status_code == 200, paused.text
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = await api.post(bulk, json={"status": "failed", "since": since})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert (answer["matched"], answer["started"], answer["not_started"]) == (5, 3, 2)
    assert answer["reasons"] == {"prospect_retried": 1, "agent_held": 1}
    assert answer["more"] is False
    outcomes = {o["handoff_id"]: o["action"] for o in answer["outcomes"]}
    assert outcomes == {
        **{h.id: "restarted" for h in hygiene},
        older.id: "refused",
        held.id: "refused",
    }
    for i in (1, 2, 3):
        await closed(client, p + i)
    for row in hygiene:
        [now_row] = [r for r in await ledger(sessionmaker, row.prospect_id) if r.id == row.id]
        assert (now_row.status, now_row.attempt) == ("completed", 2)
    work = {k: n for k, n in agents["hygiene"].work.items() if k[0] > p}
    assert work == {(p + i, "identified"): 1 for i in (1, 2, 3)}

    one = (await api.post(bulk, json={"agent": "researcher", "limit": 1})).json()
    assert (one["matched"], one["started"], one["more"]) == (1, 0, True)
    assert one["outcomes"][0]["reason"].startswith("researcher takes no handoffs now")

    for body, field in (
        ({"status": "completed"}, "status"),
        ({"agent": "nobody"}, "agent"),
        ({"limit": 501}, "limit"),
        ({"since": "2026-01-01T00:00:00"}, "since"),
    ):
        bad = await api.post(bulk, json=body)
        assert bad.status_code == 422 and field in bad.json()["detail"], (body, bad.text)

    async with sessionmaker() as session:
        audited = list(
            await session.scalars(
                select(OrchestratorAction)
                .where(OrchestratorAction.action == "handoffs_bulk_retry")
                .order_by(OrchestratorAction.id)
            )
        )
    assert [(a.agent_name, a.details["matched"], a.details["started"]) for a in audited] == [
        (None, 5, 3),
        ("researcher", 1, 0),
    ]
    assert audited[0].details["by"] == "test-operator"
    assert audited[0].details["reasons"] == {"prospect_retried": 1, "agent_held": 1}
