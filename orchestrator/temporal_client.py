"""Connecting to Temporal: local dev server, a self-hosted cluster with mTLS, or Temporal Cloud
with an API key. Every client uses the pydantic data converter, so models cross the wire."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from orchestrator.settings import TemporalSettings
from orchestrator.tracing import tracing_interceptors


def tls_config(settings: TemporalSettings) -> TLSConfig | bool:
    """``False`` for plain TCP; ``True`` for system roots; a ``TLSConfig`` for custom certs."""
    paths = (settings.tls_ca_cert_path, settings.tls_client_cert_path, settings.tls_client_key_path)
    if not settings.tls and not any(paths):
        return False
    if not any(paths) and settings.tls_server_name is None:
        return True
    return TLSConfig(
        server_root_ca_cert=_read(settings.tls_ca_cert_path),
        client_cert=_read(settings.tls_client_cert_path),
        client_private_key=_read(settings.tls_client_key_path),
        domain=settings.tls_server_name,
    )


def _read(path: object) -> bytes | None:
    from pathlib import Path

    return Path(path).read_bytes() if path else None  # type: ignore[arg-type]


class TemporalUnreachable(RuntimeError):
    """No Temporal server answered at the configured address; the message says what to do."""


CONNECT_TIMEOUT_SECONDS = 15.0
"""How long a first connection may take before it counts as unreachable."""


async def connect(settings: TemporalSettings) -> Client:
    """A client for ``settings``; :class:`TemporalUnreachable` when none can be made (the
    SDK's core reports that as a bare ``RuntimeError`` carrying its transport error)."""
    try:
        return await asyncio.wait_for(_connect(settings), CONNECT_TIMEOUT_SECONDS)
    except (RuntimeError, TimeoutError) as exc:
        tls = " and the ORCH_TEMPORAL__TLS* settings" if tls_config(settings) else ""
        raise TemporalUnreachable(
            f"cannot reach Temporal at {settings.address} (namespace {settings.namespace}): "
            f"start it (orchestrator dev runs one) or check ORCH_TEMPORAL__ADDRESS{tls}"
        ) from exc


async def _connect(settings: TemporalSettings) -> Client:
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        data_converter=pydantic_data_converter,
        tls=tls_config(settings) if not api_key else (tls_config(settings) or True),
        api_key=api_key,
        interceptors=tracing_interceptors(),
    )
