"""Request dependencies, as ``Annotated`` aliases the routes name in their signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.temporal import TemporalGateway, TemporalUnavailable
from orchestrator.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_ingest_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session on the ingestion connection, the one allowed to write ``agent_runs``."""
    async with request.app.state.ingest_sessionmaker() as session:
        yield session


def get_temporal_gateway(request: Request) -> TemporalGateway:
    """The gateway, not a connected client: routes connect only after their input has been
    validated, so bad input is a 422 even while Temporal is away."""
    return request.app.state.temporal


async def temporal_client(gateway: TemporalGateway) -> Client:
    try:
        return await gateway.client()
    except TemporalUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
IngestSessionDep = Annotated[AsyncSession, Depends(get_ingest_session)]
TemporalDep = Annotated[TemporalGateway, Depends(get_temporal_gateway)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Retry-safe work: the same key returns the work it started before "
        "(for the namespace's retention, 24 h on the dev server); another request with the "
        "same key is a 422.",
    ),
]
