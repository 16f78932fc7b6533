"""The API's shared Temporal client, connected on first use so the API can serve what the
database alone answers (health) while Temporal is still starting or briefly away."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from orchestrator.settings import TemporalSettings
from orchestrator.temporal_client import connect


class TemporalUnavailable(RuntimeError):
    pass


class TemporalGateway:
    def __init__(self, settings: TemporalSettings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await connect(self._settings)
                except Exception as exc:  # the SDK raises plain RuntimeError on connect failure
                    raise TemporalUnavailable(
                        f"Temporal at {self._settings.address} is not reachable: {exc}"
                    ) from exc
            return self._client
