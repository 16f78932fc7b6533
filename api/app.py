"""The FastAPI application: routes, error shapes, and the resources a request may use."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from temporalio.client import Client
from temporalio.service import RPCError

from api.auth import authorize
from api.routes import (
    agent_runs,
    agents,
    alerts,
    cockpit,
    dashboard,
    events,
    findings,
    handoffs,
    metrics,
    orchestrator,
    pipeline,
    probes,
    prospects,
    reports,
)
from api.temporal import TemporalGateway
from db.engine import create_engine, create_sessionmaker
from orchestrator.settings import Settings, get_settings
from orchestrator.tracing import instrument_app

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, temporal_client: Client | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.resolved_database_url)
        # run ingestion writes agent_runs for the agents, which the orchestrator's own role
        # may only read: it gets a connection of its own (the orchestrator_ingest role)
        ingest = (
            create_engine(settings.ingest_database_url) if settings.ingest_database_url else engine
        )
        app.state.settings = settings
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.ingest_sessionmaker = create_sessionmaker(ingest)
        app.state.temporal = TemporalGateway(settings.temporal, temporal_client)
        yield
        await engine.dispose()
        await ingest.dispose()

    app = FastAPI(
        title="Pipeline Orchestrator",
        version="0.1.0",
        description="Monitors and coordinates the sales-prospecting agents.",
        lifespan=lifespan,
    )
    secured = [Depends(authorize)]
    app.include_router(probes.router)
    app.include_router(orchestrator.router, dependencies=secured)
    app.include_router(handoffs.router, dependencies=secured)
    app.include_router(handoffs.callbacks)  # signed by the agent, or an operator key
    app.include_router(reports.router, dependencies=secured)
    app.include_router(agents.router, dependencies=secured)
    app.include_router(alerts.router, dependencies=secured)
    app.include_router(agent_runs.router, dependencies=secured)
    app.include_router(events.router, dependencies=secured)
    app.include_router(metrics.router, dependencies=secured)
    app.include_router(pipeline.router, dependencies=secured)
    app.include_router(findings.router, dependencies=secured)  # the cockpit (README, Dashboard)
    app.include_router(prospects.router, dependencies=secured)
    app.include_router(cockpit.router, dependencies=secured)
    dashboard.mount_dashboard(app)  # the page is public: it holds no data, its script a key
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RPCError, _temporal_error)
    app.add_exception_handler(Exception, _unexpected_error)
    instrument_app(app)  # no-op unless tracing is installed
    return app


async def _temporal_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Temporal call failed on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(status_code=503, content={"detail": f"Temporal call failed: {exc}"})


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Log the trace for us; tell the caller only that it was our fault."""
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        status_code=500, content={"detail": "internal error; the server log has the details"}
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    """One readable sentence per problem, instead of pydantic's nested structure alone."""
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{'.'.join(str(p) for p in err['loc'] if p != 'body')}: {err['msg']}"
        for err in exc.errors()
    ]
    return JSONResponse(
        status_code=422,
        content={"detail": "; ".join(problems), "errors": jsonable_encoder(exc.errors())},
    )
