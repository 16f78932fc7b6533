"""Inhibition on both databases: an agent failing with 20 stalled handoffs is one
notification, not 21; the stalled ones are held (``held_by``) and counted on the agent's
alert; when the agent recovers they are judged again: still stalled ones are told then,
cleared ones close quietly. Notifications are counted in the outbox (one sink)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.commands.alerts import NotifyPolicy, rejudge_held
from db.commands.findings import RecordHealthInput, record_health_findings
from db.commands.upkeep import watch_stalls
from db.models import AgentControl, Alert, Handoff, Notification
from orchestrator.settings import Settings
from pipeline.handoffs import HandoffStatus, handoff_id
from pipeline.health import AgentHealth, HealthStatus
from tests.helpers.api import VIEWER_KEY, api_client
from tests.helpers.factories import NOW, add

POLICY = NotifyPolicy(sinks=["webhook"], dashboard_url="http://orch.example")
MINUTE = timedelta(minutes=1)
HEALTH_ALERT = "agent_health:hygiene"
Sessions = async_sessionmaker[AsyncSession]


def stalled(pid: int) -> Handoff:
    return Handoff(
        id=handoff_id(pid, "identified", NOW),
        prospect_id=pid,
        from_state="identified",
        state_entered_at=NOW,
        to_agent="hygiene",
        status=HandoffStatus.STALLED.value,
        attempt=1,
        created_at=NOW,
        updated_at=NOW,
    )


def verdict(status: HealthStatus, at: datetime) -> AgentHealth:
    return AgentHealth(
        agent_name="hygiene",
        status=status,
        reasons=["error rate 90% in the window"] if status is HealthStatus.FAILING else [],
        runs_last_24h=10,
        errors_last_24h=9 if status is HealthStatus.FAILING else 0,
        error_rate=0.9 if status is HealthStatus.FAILING else 0.0,
        expected_records_per_run=20,
        last_successful_run=None,
        last_run_duration_seconds=60.0,
        avg_run_duration_seconds=60.0,
        avg_records_per_run=20.0,
        last_failure_at=None,
        last_error=None,
        checked_at=at,
    )


async def monitor(sessionmaker: Sessions, status: HealthStatus, at: datetime) -> None:
    agents = [verdict(status, at)]
    cycle = RecordHealthInput(cycle_id=f"c-{at.isoformat()}", as_of=at, agents=agents)
    async with sessionmaker() as session:
        await record_health_findings(session, cycle, POLICY, breaker=True)


async def upkeep(sessionmaker: Sessions, at: datetime) -> int:
    """The stall watch and the re-judging ``after_cycle`` does, in one transaction."""
    async with sessionmaker() as session:
        count = await watch_stalls(session, at, POLICY)
        await rejudge_held(session, at, POLICY)
        await session.commit()
    return count


async def sent(sessionmaker: Sessions) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Alert.kind, Notification.event)
            .join(Alert, Alert.id == Notification.alert_id)
            .order_by(Notification.id)
        )
        return [(kind, event) for kind, event in rows.all()]


async def held_by(sessionmaker: Sessions) -> dict[str | None, int]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Alert.held_by, func.count())
            .where(Alert.kind == "stalled_handoff", Alert.status != "resolved")
            .group_by(Alert.held_by)
        )
        return dict(rows.all())


async def test_a_failing_agent_with_20_stalled_handoffs_sends_one_notification_not_21(
    sessionmaker, agent_sessionmaker
) -> None:
    await add(agent_sessionmaker, *[stalled(pid) for pid in range(1, 21)])
    await monitor(sessionmaker, HealthStatus.FAILING, NOW)
    assert await upkeep(sessionmaker, NOW + MINUTE) == 20
    assert await sent(sessionmaker) == [("agent_health", "opened")]
    assert await held_by(sessionmaker) == {HEALTH_ALERT: 20}
    async with sessionmaker() as session:
        agent_alert = await session.scalar(select(Alert).filter_by(fingerprint=HEALTH_ALERT))
        assert agent_alert is not None and agent_alert.details["held"] == 20

    # seen again while failing: still held, the count kept across the monitor's refresh
    await monitor(sessionmaker, HealthStatus.FAILING, NOW + 2 * MINUTE)
    await upkeep(sessionmaker, NOW + 3 * MINUTE)
    assert len(await sent(sessionmaker)) == 1
    async with sessionmaker() as session:
        agent_alert = await session.scalar(select(Alert).filter_by(fingerprint=HEALTH_ALERT))
        assert agent_alert is not None and agent_alert.details["held"] == 20

    # healthy again, but its circuit is still open: the circuit holds them now
    await monitor(sessionmaker, HealthStatus.HEALTHY, NOW + 4 * MINUTE)
    assert await sent(sessionmaker) == [("agent_health", "opened"), ("agent_health", "resolved")]
    assert await held_by(sessionmaker) == {"circuit_open:hygiene": 20}

    # the circuit closes and 5 handoffs finished meanwhile: 15 are told, 5 close quietly
    async with sessionmaker() as session:
        control = await session.get(AgentControl, "hygiene")
        assert control is not None
        control.circuit_state = "closed"
        for row in await session.scalars(select(Handoff).where(Handoff.prospect_id <= 5)):
            row.status, row.finished_at = HandoffStatus.COMPLETED.value, NOW + 5 * MINUTE
        await session.commit()
    assert await upkeep(sessionmaker, NOW + 6 * MINUTE) == 15
    notified = await sent(sessionmaker)
    assert notified[2:] == [("stalled_handoff", "opened")] * 15
    assert await held_by(sessionmaker) == {None: 15}
    async with sessionmaker() as session:
        quiet = await session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.kind == "stalled_handoff", Alert.status == "resolved")
        )
        payload = await session.scalar(
            select(Notification.payload).order_by(Notification.id.desc()).limit(1)
        )
    assert quiet == 5
    assert payload is not None
    link = f"http://orch.example/dashboard#prospect={payload['prospect_id']}"
    assert payload["dashboard_url"] == link


async def test_a_paused_agent_holds_its_stalls_and_resume_lets_them_go(
    sessionmaker, agent_sessionmaker, settings: Settings
) -> None:
    await add(agent_sessionmaker, *[stalled(pid) for pid in (1, 2)])
    await add(
        sessionmaker,
        AgentControl(agent_name="hygiene", paused=True, circuit_state="closed", updated_at=NOW),
    )
    await upkeep(sessionmaker, NOW)
    assert await sent(sessionmaker) == []
    assert await held_by(sessionmaker) == {"paused:hygiene": 2}
    async with api_client(settings, key=VIEWER_KEY) as api:  # the API says what holds them
        shown = (await api.get("/api/v1/alerts", params={"status": "open"})).json()
    assert [a["held_by"] for a in shown] == ["paused:hygiene"] * 2
    async with sessionmaker() as session:
        control = await session.get(AgentControl, "hygiene")
        assert control is not None
        control.paused = False
        await session.commit()
    await upkeep(sessionmaker, NOW + MINUTE)
    assert await sent(sessionmaker) == [("stalled_handoff", "opened")] * 2
