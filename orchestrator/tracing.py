"""OpenTelemetry tracing: one trace from an API request through the workflows and their
activities to the agent's HTTP trigger, sent over OTLP/HTTP.

Off unless ``ORCH_TRACING__OTLP_ENDPOINT`` is set, and then nothing global is touched: the
process keeps its own TracerProvider here (like the SDK Runtime in ``sdk_metrics``) and hands
it to each instrumentation, instead of replacing OpenTelemetry's global provider, which may be
set only once per process. Installed once per process (the CLI does it before any client is
made); Temporal clients made by ``connect`` then carry the tracing interceptor, and so do the
workers built on them.
"""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from orchestrator.settings import TracingSettings

URL_ATTRIBUTES = ("http.url", "url.full")
"""Where the HTTP instrumentation puts the full URL (old and new semantic conventions)."""

if TYPE_CHECKING:  # imported when tracing is on, so a process without it loads none of them
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from temporalio.contrib.opentelemetry import TracingInterceptor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tracing:
    provider: TracerProvider
    interceptor: TracingInterceptor
    """Client and worker interceptor: StartWorkflow, RunWorkflow, StartActivity, RunActivity
    spans, with the trace context carried in Temporal headers."""


_installed: Tracing | None = None


def build_tracing(settings: TracingSettings) -> Tracing | None:
    """A provider exporting in batches to the endpoint; ``None`` when no endpoint is set."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from temporalio.contrib.opentelemetry import TracingInterceptor

    # our own atexit hook flushes; the SDK's would run after ours on an already-shut provider
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name}), shutdown_on_exit=False
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(settings.otlp_endpoint)))
    return Tracing(provider, TracingInterceptor(provider.get_tracer("temporalio")))


def install_tracing(settings: TracingSettings) -> Tracing | None:
    """Make tracing this process's, before any Temporal client is made (clients keep the
    interceptors they were made with). Idempotent; flushed and shut down at exit."""
    global _installed
    if _installed is None:
        _installed = build_tracing(settings)
        if _installed is not None:
            atexit.register(shutdown_tracing)
            log.info("tracing: sending spans to %s", _endpoint_for_log(settings.otlp_endpoint))
    return _installed


def installed_tracing() -> Tracing | None:
    return _installed


def shutdown_tracing() -> None:
    """Export the spans still buffered, then stop; tracing is off afterwards."""
    global _installed
    tracing, _installed = _installed, None
    if tracing is not None:
        tracing.provider.force_flush()
        tracing.provider.shutdown()


def tracing_interceptors() -> list[TracingInterceptor]:
    """For ``Client.connect(interceptors=...)``: empty when tracing is off."""
    return [_installed.interceptor] if _installed is not None else []


def instrument_app(app: FastAPI) -> None:
    """An HTTP server span per request, the parent of the workflows the request starts."""
    if _installed is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_installed.provider, exclude_spans=["receive", "send"]
    )


def instrument_http(http: httpx.AsyncClient) -> None:
    """A client span per request (HTTP agent triggers, webhooks), with ``traceparent`` sent
    along so an agent that traces joins the same trace."""
    if _installed is None or getattr(http, "_is_instrumented_by_opentelemetry", False):
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(
        http, tracer_provider=_installed.provider, request_hook=_url_to_origin
    )


async def _url_to_origin(span: Span, request: Any) -> None:
    """The span's URL cut to scheme, host and port: this client also posts to webhooks,
    and a Slack webhook's secret is its path."""
    url = httpx.URL(request.url) if not isinstance(request.url, tuple) else _raw(request.url)
    origin = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    for key in URL_ATTRIBUTES:
        if key in (getattr(span, "attributes", None) or {}):
            span.set_attribute(key, origin)


def _raw(url: tuple[bytes, bytes, int | None, bytes]) -> httpx.URL:
    scheme, host, port, _ = url
    return httpx.URL(scheme=scheme.decode(), host=host.decode(), port=port)


def _endpoint_for_log(url: str | None) -> str:
    """The endpoint without credentials or query (a collector token may ride in either)."""
    parsed = httpx.URL(url or "")
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
