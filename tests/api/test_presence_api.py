"""Presence through the API on both databases: an HTTP agent is present while its endpoint
answered lately, absent once the answer is old or when it never answered; a Temporal agent is
shown unknown, never an error, while Temporal cannot be asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from db.commands.presence import record_answer
from orchestrator.settings import AgentEndpoint, Settings
from tests.helpers.api import VIEWER_KEY, api_client, free_port


def http_researcher(settings: Settings) -> Settings:
    """The researcher over HTTP; Temporal at a port nobody listens on."""
    temporal = settings.temporal.model_copy(update={"address": f"127.0.0.1:{free_port()}"})
    endpoint = AgentEndpoint(transport="http", url="http://127.0.0.1:9/tasks")
    return settings.model_copy(
        update={"temporal": temporal, "agent_endpoints": {"researcher": endpoint}}
    )


async def answered(sessionmaker, at: datetime) -> None:  # type: ignore[no-untyped-def]
    async with sessionmaker() as session:
        await record_answer(session, "researcher", 202, at)
        await session.commit()


async def test_http_agent_presence_follows_its_endpoints_answers(
    sessionmaker, settings: Settings
) -> None:
    settings = http_researcher(settings)
    now = datetime.now(UTC)
    async with api_client(settings, key=VIEWER_KEY) as api:
        never = {a["name"]: a["presence"] for a in (await api.get("/api/v1/agents")).json()}
        assert never["researcher"]["present"] is False
        assert never["researcher"]["detail"] == "its endpoint never answered"
        assert never["hygiene"]["transport"] == "temporal"
        assert never["hygiene"]["present"] is None and "not reachable" in never["hygiene"]["detail"]
        assert never["prospector"] == {
            "agent": "prospector",
            "transport": "temporal",
            "present": None,
            "pollers": None,
            "last_seen": None,
            "detail": "receives no handoffs",
        }

        await answered(sessionmaker, now - timedelta(hours=1))
        await answered(sessionmaker, now - timedelta(minutes=1))  # the newer answer wins
        health = await api.get("/api/v1/orchestrator/health")
        assert health.status_code == 200
        shown = {p["agent"]: p for p in health.json()["presence"]}
        assert (shown["researcher"]["transport"], shown["researcher"]["present"]) == ("http", True)

        await answered(sessionmaker, now - timedelta(hours=1))
        stale = {a["name"]: a["presence"] for a in (await api.get("/api/v1/agents")).json()}
        assert stale["researcher"]["present"] is False
        assert "has not answered for over" in stale["researcher"]["detail"]
