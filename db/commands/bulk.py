"""The audit of an operator's bulk action: one row saying what was asked, by whom, and
what came of it, and one event so every open dashboard refreshes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Event, OrchestratorAction


async def record_bulk_action(
    session: AsyncSession,
    action: str,
    now: datetime,
    *,
    agent: str | None,
    details: dict[str, Any],
) -> int:
    """Write the audit row and its event in one transaction; the audit row's id."""
    row = OrchestratorAction(action=action, agent_name=agent, created_at=now, details=details)
    session.add(row)
    await session.flush()
    session.add(
        Event(
            dedup_key=f"{action}:{row.id}",
            kind=action,
            agent_name=agent,
            payload={"audit_id": row.id, **details},
            created_at=now,
        )
    )
    await session.commit()
    return row.id
