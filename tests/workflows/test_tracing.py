"""Tracing against real parts: a local OTLP/HTTP receiver, the API on a socket, a worker and
an HTTP agent; one request to POST /run must come back as one trace down to the agent call."""

from __future__ import annotations

import gzip
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from temporalio.client import Client

from api.app import create_app
from api.auth import KEY_HEADER
from orchestrator.settings import AgentEndpoint, Settings, TracingSettings
from orchestrator.temporal_client import connect
from orchestrator.tracing import (
    build_tracing,
    install_tracing,
    installed_tracing,
    instrument_http,
    shutdown_tracing,
    tracing_interceptors,
)
from pipeline.contract import AgentTask
from tests.helpers.agents import FakeAgent
from tests.helpers.api import OPERATOR_KEY, free_port, served, with_keys
from tests.helpers.factories import add, prospect
from tests.helpers.handoffs import ledger, running, wait_until

SERVICE = "orchestrator-under-test"


@dataclass
class OtlpReceiver:
    """What a collector would get: every span posted to ``/v1/traces``, with its service."""

    spans: list[tuple[str, Span]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.paths.append(self.path)
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((service, span) for span in scope_spans.spans)


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    received = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), received.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield received, f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_tracing_left() -> Iterator[None]:
    """Whatever a test installs is gone afterwards, for the tests that follow it."""
    yield
    shutdown_tracing()


@dataclass
class TracedAgent:
    """A researcher behind HTTP that keeps the ``traceparent`` header it was sent."""

    agent: FakeAgent
    traceparents: list[str | None] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/tasks")
        async def take(request: Request) -> Response:
            self.traceparents.append(request.headers.get("traceparent"))
            task = AgentTask.model_validate_json(await request.body())
            result = await self.agent._advance(task)
            return Response(result.model_dump_json(), media_type="application/json")

        return app


def traced_settings(settings: Settings, endpoint: str, agent_url: str, api_url: str) -> Settings:
    return with_keys(settings).model_copy(
        update={
            "tracing": TracingSettings(otlp_endpoint=endpoint, service_name=SERVICE),
            "agent_endpoints": {"researcher": AgentEndpoint(transport="http", url=agent_url)},
            "api_public_url": api_url,
        }
    )


@dataclass
class Run:
    workflow_id: str
    agent: TracedAgent
    agent_origin: str


@pytest.fixture
async def traced_run(
    sessionmaker,
    agent_sessionmaker,
    worker_settings: Settings,
    receiver: tuple[OtlpReceiver, str],
    no_tracing_left,
) -> AsyncIterator[Run]:
    """POST /run (mode handoffs) on a traced stack; a tier C prospect waiting for research
    goes to the HTTP researcher and stops there. Spans are flushed when it yields."""
    agent_port, api_port = free_port(), free_port()
    agent_origin, api_url = f"http://127.0.0.1:{agent_port}", f"http://127.0.0.1:{api_port}"
    settings = traced_settings(worker_settings, receiver[1], f"{agent_origin}/tasks", api_url)
    agent = TracedAgent(FakeAgent("researcher", agent_sessionmaker))
    await add(agent_sessionmaker, *prospect("needs_research", tier="C", pid=61))
    install_tracing(settings.tracing)
    traced = await connect(settings.temporal)
    async with (
        served(agent.app(), agent_port),
        served(create_app(settings, temporal_client=traced), api_port) as api,
        running(traced, sessionmaker, settings, {}),
        httpx.AsyncClient(base_url=api, headers={KEY_HEADER: OPERATOR_KEY}) as http,
    ):
        answer = await http.post("/api/v1/orchestrator/run", params={"mode": "handoffs"})
        assert answer.status_code == 202, answer.text
        workflow_id = answer.json()["workflow_id"]
        await traced.get_workflow_handle(workflow_id).result()
        await wait_until(lambda: _handoff_closed(sessionmaker, 61))
    shutdown_tracing()  # flushes what the batch processor still holds
    yield Run(workflow_id, agent, agent_origin)


async def _handoff_closed(sessionmaker, prospect_id: int) -> bool:
    return any(row.finished_at is not None for row in await ledger(sessionmaker, prospect_id))


def _lineage(span: Span, by_id: dict[bytes, Span]) -> list[Span]:
    """``span`` and its ancestors, up to the root of its trace."""
    chain = [span]
    while chain[-1].parent_span_id:
        chain.append(by_id[chain[-1].parent_span_id])
    return chain


def _url(span: Span) -> str | None:
    return _attribute(span, "url.full") or _attribute(span, "http.url")


def _attribute(span: Span, key: str) -> str | None:
    return next((a.value.string_value for a in span.attributes if a.key == key), None)


async def test_api_request_workflows_activities_and_agent_call_are_one_trace(
    traced_run: Run, receiver: tuple[OtlpReceiver, str]
) -> None:
    received, _ = receiver
    assert received.paths and set(received.paths) == {"/v1/traces"}
    assert {service for service, _ in received.spans} == {SERVICE}
    spans = [span for _, span in received.spans]
    by_id = {span.span_id: span for span in spans}
    # the client span's URL is the agent's origin: webhook URLs carry secrets in their path
    [agent_call] = [s for s in spans if s.kind == Span.SPAN_KIND_CLIENT and s.name == "POST"]
    assert _url(agent_call) == traced_run.agent_origin
    chain = _lineage(agent_call, by_id)
    assert [s.name for s in chain] == [
        "POST",
        "RunActivity:trigger_http_agent",
        "StartActivity:trigger_http_agent",
        "StartChildWorkflow:handoff",
        "StartWorkflow:orchestrator-cycle",
        "POST /api/v1/orchestrator/run",
    ]
    root, start_cycle, start_handoff = chain[-1], chain[-2], chain[-3]
    assert root.kind == Span.SPAN_KIND_SERVER and not root.parent_span_id
    assert _attribute(start_cycle, "temporalWorkflowID") == traced_run.workflow_id
    # each workflow's run is a (zero-length) span under the start that caused it
    runs = {
        s.name: (s.parent_span_id, _attribute(s, "temporalWorkflowID"))
        for s in spans
        if s.name.startswith("RunWorkflow:")
    }
    assert runs == {
        "RunWorkflow:orchestrator-cycle": (start_cycle.span_id, traced_run.workflow_id),
        "RunWorkflow:handoff": (start_handoff.span_id, "handoff-61"),
    }
    trace_id = root.trace_id
    assert {s.trace_id for s in chain} == {trace_id}
    # the database steps of both workflows are in the same trace, as activities
    in_trace = {s.name for s in spans if s.trace_id == trace_id}
    database_steps = ("find_pending_handoffs", "begin_handoff", "finish_handoff")
    assert {f"RunActivity:{name}" for name in database_steps} <= in_trace
    # and the agent was told which trace it works for, so it can join it
    [traceparent] = traced_run.agent.traceparents
    assert traceparent is not None and traceparent.split("-")[1] == trace_id.hex()


async def test_without_an_endpoint_nothing_is_configured(
    client: Client, worker_settings: Settings, no_tracing_left
) -> None:
    global_provider = trace.get_tracer_provider()
    off = TracingSettings()
    assert off.otlp_endpoint is None
    assert build_tracing(off) is None and install_tracing(off) is None
    assert installed_tracing() is None and tracing_interceptors() == []
    app = create_app(worker_settings)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)
    async with httpx.AsyncClient() as http:
        instrument_http(http)
        assert not getattr(http, "_is_instrumented_by_opentelemetry", False)
    untraced = await connect(worker_settings.temporal)
    assert list(untraced.config()["interceptors"]) == []
    assert trace.get_tracer_provider() is global_provider
    assert isinstance(global_provider, trace.ProxyTracerProvider)
    assert not [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]


async def test_tracing_leaves_the_global_provider_alone_and_stops_its_exporter(
    receiver: tuple[OtlpReceiver, str], no_tracing_left
) -> None:
    global_provider = trace.get_tracer_provider()
    tracing = install_tracing(TracingSettings(otlp_endpoint=receiver[1]))
    assert tracing is not None and tracing_interceptors() == [tracing.interceptor]
    assert install_tracing(TracingSettings(otlp_endpoint="http://elsewhere")) is tracing
    assert trace.get_tracer_provider() is global_provider
    shutdown_tracing()
    assert installed_tracing() is None
    assert not [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]
