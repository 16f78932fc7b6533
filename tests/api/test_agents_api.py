"""GET /api/v1/agents through ASGI against real databases: every configured agent with its
health, controls and queue depth (prospects waiting for a handoff to it); the roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AgentControl, Handoff
from orchestrator.settings import Settings
from pipeline.handoffs import handoff_id
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import add, prospect, run

AGENTS_URL = "/api/v1/agents"
H = timedelta(hours=1)
FIELDS = {
    "name",
    "health",
    "paused",
    "paused_reason",
    "circuit_state",
    "circuit_changed_at",
    "silenced_until",
    "queue_depth",
    "presence",
}


async def seed_queue(sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> None:
    """3 identified + 2 needs_scoring wait for hygiene; 1 scored A1 for the researcher (a
    scored C does not); 1 research_complete B with an email for outreach (one without an email
    does not). Deleted, already handed off and finished prospects wait for nobody."""
    entered = now - H
    rows: list[object] = []
    for pid in (1, 2, 3):
        rows += prospect("identified", pid=pid)
    for pid in (4, 5):
        rows += prospect("needs_scoring", pid=pid)
    rows += prospect("scored", tier="A1", pid=6)
    rows += prospect("scored", tier="C", pid=7)
    rows += prospect("research_complete", tier="B", pid=8)
    rows += prospect("research_complete", tier="A1", email=None, pid=9)
    rows += prospect("identified", deleted=True, pid=10)
    rows += prospect("identified", entered=entered, pid=11)
    rows += prospect("in_sequence", tier="A1", pid=12)
    await add(sessionmaker, *rows)
    await add(
        sessionmaker,
        Handoff(
            id=handoff_id(11, "identified", entered),
            prospect_id=11,
            from_state="identified",
            state_entered_at=entered,
            to_agent="hygiene",
            status="running",
            attempt=1,
            created_at=entered,
            updated_at=entered,
        ),
    )


async def listed(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await api.get(AGENTS_URL)
    assert response.status_code == 200, response.text
    return response.json()


def controls(agents: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    keys = ("name", "paused", "paused_reason", "circuit_state", "silenced_until", "queue_depth")
    return [tuple(a[k] for k in keys) for a in agents]


async def test_agents_list_health_controls_and_queue_depth(
    agent_sessionmaker, settings: Settings
) -> None:
    now = datetime.now(UTC)
    await seed_queue(agent_sessionmaker, now)
    # hygiene: 2 of 10 runs failed (degraded); researcher: all good; the others never ran
    await add(
        agent_sessionmaker,
        *[
            run("hygiene", "failed" if i < 2 else "completed", ago=H * (1 + i), now=now)
            for i in range(10)
        ],
    )
    await add(
        agent_sessionmaker,
        *[run("researcher", ago=H * (1 + i), records=5, now=now) for i in range(3)],
    )
    await add(
        agent_sessionmaker,
        AgentControl(
            agent_name="outreach",
            paused=False,
            circuit_state="open",
            circuit_changed_at=now - H,
            updated_at=now - H,
        ),
    )

    async with api_client(settings) as operator, api_client(settings, key=VIEWER_KEY) as viewer:
        before = await listed(viewer)
        assert [a["name"] for a in before] == list(settings.agents)
        assert all(set(a) == FIELDS for a in before)
        by_name = {a["name"]: a for a in before}
        assert {n: a["queue_depth"] for n, a in by_name.items()} == {
            "prospector": 0,
            "hygiene": 5,
            "researcher": 1,
            "outreach": 1,
        }
        assert {n: a["health"]["status"] for n, a in by_name.items()} == {
            "prospector": "unknown",
            "hygiene": "degraded",
            "researcher": "healthy",
            "outreach": "unknown",
        }
        hygiene = by_name["hygiene"]
        assert hygiene["health"]["agent_name"] == "hygiene"
        assert hygiene["health"]["error_rate"] == 0.2
        assert (hygiene["health"]["runs_last_24h"], hygiene["health"]["errors_last_24h"]) == (
            10,
            2,
        )
        assert {
            n: (a["paused"], a["circuit_state"], a["silenced_until"]) for n, a in by_name.items()
        } == {
            "prospector": (False, "closed", None),
            "hygiene": (False, "closed", None),
            "researcher": (False, "closed", None),
            "outreach": (False, "open", None),
        }
        assert by_name["outreach"]["circuit_changed_at"] is not None

        # the viewer reads, but does not act
        for action, body in (
            ("pause", {"reason": "x"}),
            ("resume", None),
            ("silence", {"until": (now + H).isoformat()}),
        ):
            refused = await viewer.post(f"{AGENTS_URL}/researcher/{action}", json=body)
            assert refused.status_code == 403, (action, refused.text)
            assert "operator" in refused.json()["detail"]
        assert controls(await listed(operator)) == controls(before)  # nothing changed

        paused = await operator.post(
            f"{AGENTS_URL}/researcher/pause", json={"reason": "rate limited"}
        )
        assert paused.status_code == 200, paused.text
        until = now + 2 * H
        silenced = await operator.post(
            f"{AGENTS_URL}/hygiene/silence", json={"until": until.isoformat()}
        )
        assert silenced.status_code == 200, silenced.text

        after = {a["name"]: a for a in await listed(viewer)}
    assert (after["researcher"]["paused"], after["researcher"]["paused_reason"]) == (
        True,
        "rate limited",
    )
    assert after["researcher"]["queue_depth"] == 1  # paused: still waiting, still counted
    assert datetime.fromisoformat(after["hygiene"]["silenced_until"]) == until
    assert (after["hygiene"]["paused"], after["hygiene"]["queue_depth"]) == (False, 5)


async def test_agents_need_a_key(settings: Settings) -> None:
    async with api_client(settings, key=None) as anonymous:
        response = await anonymous.get(AGENTS_URL)
        assert response.status_code == 401, response.text
        assert (
            await anonymous.post(f"{AGENTS_URL}/hygiene/pause", json={"reason": "x"})
        ).status_code == 401


async def test_empty_pipeline_lists_every_agent_idle(sessionmaker, settings: Settings) -> None:
    custom = settings.model_copy(update={"agents": {"hygiene": 20, "scorer": 3}})
    async with api_client(custom, key=VIEWER_KEY) as viewer:
        agents = await listed(viewer)
    assert [
        (a["name"], a["queue_depth"], a["health"]["status"], a["circuit_state"]) for a in agents
    ] == [
        ("hygiene", 0, "unknown", "closed"),
        ("scorer", 0, "unknown", "closed"),
    ]
