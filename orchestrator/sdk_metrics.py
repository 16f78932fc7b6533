"""The Temporal SDK's own metrics (and ours recorded through its meter), served by the SDK
Runtime's Prometheus exporter.

A Runtime belongs to a process, like the clients and workers built on it, so this module keeps
the one this process installed: the worker serves it at ``sdk_metrics_address`` for Prometheus,
and the API's ``/metrics`` appends it when the worker runs in the same process (``dev``).
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from orchestrator.settings import ObservabilitySettings
from pipeline.metrics import BUCKETS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SdkMetrics:
    runtime: Runtime
    address: str
    """host:port of the exporter; scrape ``http://<address>/metrics``."""

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"


_installed: SdkMetrics | None = None


def install_sdk_metrics(settings: ObservabilitySettings) -> SdkMetrics | None:
    """Make a Runtime with a Prometheus exporter the process default, before any client is
    made (clients keep the Runtime they were made with). Idempotent per process."""
    global _installed
    if _installed is not None or not settings.sdk_metrics_address:
        return _installed
    address = _concrete(settings.sdk_metrics_address)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=prometheus_config(address)))
    Runtime.set_default(runtime, error_if_already_set=False)
    _installed = SdkMetrics(runtime, address)
    log.info("Temporal SDK metrics at %s", _installed.url)
    return _installed


def installed_sdk_metrics() -> SdkMetrics | None:
    return _installed


def prometheus_config(address: str) -> PrometheusConfig:
    return PrometheusConfig(
        bind_address=address, durations_as_seconds=True, histogram_bucket_overrides=BUCKETS
    )


def _concrete(address: str) -> str:
    """Port 0 means any free port; the exporter cannot say which it took, so pick it here."""
    host, _, port = address.rpartition(":")
    if port != "0":
        return address
    with socket.socket() as sock:
        sock.bind((host, 0))
        return f"{host}:{sock.getsockname()[1]}"
