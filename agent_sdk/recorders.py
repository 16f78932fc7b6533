"""Where an agent's run history goes: straight into ``agent_runs``, or through the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AgentRun


class RunRecorder(Protocol):
    async def started(self, agent: str, handoff_id: str | None) -> str: ...

    async def finished(
        self, agent: str, run_id: str, *, ok: bool, records: int, error: str | None
    ) -> None: ...

    async def already_done(self, agent: str, handoff_id: str) -> bool: ...


def _now() -> datetime:
    return datetime.now(UTC)


class DatabaseRecorder:
    """Writes ``agent_runs`` rows with the agent's own database access."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

    async def started(self, agent: str, handoff_id: str | None) -> str:
        async with self._sessionmaker() as session:
            row = AgentRun(
                agent_name=agent, status="running", started_at=_now(), handoff_id=handoff_id
            )
            session.add(row)
            await session.commit()
            return str(row.id)

    async def finished(
        self, agent: str, run_id: str, *, ok: bool, records: int, error: str | None
    ) -> None:
        async with self._sessionmaker() as session:
            await session.execute(
                update(AgentRun)
                .where(AgentRun.id == int(run_id))
                .values(
                    status="completed" if ok else "failed",
                    completed_at=_now(),
                    records_processed=records if ok else None,
                    error=None if ok else (error or "failed")[:4000],
                )
            )
            await session.commit()

    async def already_done(self, agent: str, handoff_id: str) -> bool:
        async with self._sessionmaker() as session:
            found = await session.scalar(
                select(AgentRun.id)
                .where(
                    AgentRun.agent_name == agent,
                    AgentRun.handoff_id == handoff_id,
                    AgentRun.status == "completed",
                )
                .limit(1)
            )
            return found is not None


class ApiRecorder:
    """Reports runs to ``POST /api/v1/agents/{name}/runs`` (and ``PATCH .../runs/{id}``)."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._http = http or httpx.AsyncClient(timeout=30)
        self._headers = {"X-API-Key": api_key}

    async def started(self, agent: str, handoff_id: str | None) -> str:
        body = {"status": "running", "started_at": _now().isoformat(), "handoff_id": handoff_id}
        response = await self._http.post(
            f"{self._base}/api/v1/agents/{agent}/runs", json=body, headers=self._headers
        )
        response.raise_for_status()
        return str(response.json()["id"])

    async def finished(
        self, agent: str, run_id: str, *, ok: bool, records: int, error: str | None
    ) -> None:
        body = {
            "status": "completed" if ok else "failed",
            "completed_at": _now().isoformat(),
            "records_processed": records if ok else None,
            "error": None if ok else (error or "failed")[:4000],
        }
        response = await self._http.patch(
            f"{self._base}/api/v1/agents/{agent}/runs/{run_id}", json=body, headers=self._headers
        )
        response.raise_for_status()

    async def already_done(self, agent: str, handoff_id: str) -> bool:
        response = await self._http.get(
            f"{self._base}/api/v1/agents/{agent}/runs",
            params={"handoff_id": handoff_id, "status": "completed"},
            headers=self._headers,
        )
        response.raise_for_status()
        return bool(response.json())
