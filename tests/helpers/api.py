"""The API in tests: through ASGI (no socket), or served by uvicorn on a free port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from temporalio.client import Client

from api.app import create_app
from api.auth import KEY_HEADER, hash_key
from cli.services import api_server
from orchestrator.settings import ApiKey, Role, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


OPERATOR_KEY = "test-operator-key"
VIEWER_KEY = "test-viewer-key"


def with_keys(settings: Settings) -> Settings:
    """``settings`` with a known operator key and viewer key."""
    keys = [
        ApiKey(name="test-operator", role=Role.OPERATOR, sha256=hash_key(OPERATOR_KEY)),
        ApiKey(name="test-viewer", role=Role.VIEWER, sha256=hash_key(VIEWER_KEY)),
    ]
    return settings.model_copy(update={"api_keys": keys})


@asynccontextmanager
async def api_client(
    settings: Settings, temporal_client: Client | None = None, key: str | None = OPERATOR_KEY
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan entered (ASGITransport does not run it) and a client on it,
    sending ``key`` (an operator key unless told otherwise)."""
    app = create_app(with_keys(settings), temporal_client=temporal_client)
    headers = {KEY_HEADER: key} if key else {}
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as http,
    ):
        yield http


@asynccontextmanager
async def served(app: FastAPI, port: int) -> AsyncIterator[str]:
    """``app`` on a real socket at 127.0.0.1:``port``; yields its base URL."""
    server = api_server(app, "127.0.0.1", port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
