"""Request dependencies, as ``Annotated`` aliases the routes name in their signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.temporal import TemporalUnavailable
from orchestrator.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


async def get_temporal_client(request: Request) -> Client:
    try:
        return await request.app.state.temporal.client()
    except TemporalUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalClientDep = Annotated[Client, Depends(get_temporal_client)]
