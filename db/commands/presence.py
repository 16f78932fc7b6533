"""Agent presence, written: when an HTTP agent's endpoint last answered, and the one
``agent_no_worker`` alert per agent a handoff raises when nobody serves its agent's queue
(resolved by the cycle's upkeep once a worker polls it again)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.commands.alerts import (
    AlertChange,
    AlertSpec,
    NotifyPolicy,
    open_alerts_of_kind,
    raise_alert,
    resolve_alert,
)
from db.dialect import insert_for
from db.models import AgentEndpointAnswer
from pipeline.inhibition import AGENT_NO_WORKER
from pipeline.presence import no_worker_detail


def no_worker_fingerprint(agent: str) -> str:
    return f"{AGENT_NO_WORKER}:{agent}"


async def record_answer(session: AsyncSession, agent: str, status_code: int, now: datetime) -> None:
    """The agent's endpoint answered (whatever it said): it is there."""
    statement = insert_for(session, AgentEndpointAnswer).values(
        agent_name=agent, answered_at=now, status_code=status_code
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["agent_name"],
            set_={
                "answered_at": statement.excluded.answered_at,
                "status_code": statement.excluded.status_code,
            },
        )
    )


async def flag_no_worker(
    session: AsyncSession, agent: str, queue: str, now: datetime, policy: NotifyPolicy
) -> AlertChange:
    """Raise (or refresh) the agent's ``agent_no_worker`` alert and commit. Handoffs begun at
    once may race to open it: the loser finds it open and refreshes it instead."""
    spec = AlertSpec(
        fingerprint=no_worker_fingerprint(agent),
        kind=AGENT_NO_WORKER,
        agent_name=agent,
        severity="critical",
        message=f"{agent}: {no_worker_detail(queue)}; its handoffs wait",
        details={"queue": queue},
    )
    for _ in range(2):
        try:
            change = await raise_alert(session, spec, now, policy)
            await session.commit()
            return change
        except IntegrityError:
            await session.rollback()
    return AlertChange.UNCHANGED


async def clear_no_worker(
    session: AsyncSession, served: dict[str, bool | None], now: datetime, policy: NotifyPolicy
) -> int:
    """Resolve the ``agent_no_worker`` alerts of agents a worker serves again; how many."""
    resolved = 0
    for fingerprint, alert in (await open_alerts_of_kind(session, AGENT_NO_WORKER)).items():
        if alert.agent_name is not None and served.get(alert.agent_name):
            await resolve_alert(session, fingerprint, now, policy, alert)
            resolved += 1
    return resolved


async def open_no_worker_agents(session: AsyncSession) -> list[str]:
    """Agents with an open ``agent_no_worker`` alert: the upkeep looks at their queues."""
    alerts = await open_alerts_of_kind(session, AGENT_NO_WORKER)
    return sorted({a.agent_name for a in alerts.values() if a.agent_name is not None})
