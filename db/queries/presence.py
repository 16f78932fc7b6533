"""Agent presence, read: when each HTTP agent's endpoint last answered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AgentEndpointAnswer


async def endpoint_answers(session: AsyncSession) -> dict[str, datetime]:
    rows = await session.execute(
        select(AgentEndpointAnswer.agent_name, AgentEndpointAnswer.answered_at)
    )
    return {agent: at for agent, at in rows.all()}
