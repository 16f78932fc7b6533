"""Schemathesis against the live API: every operation of /openapi.json, with an operator key,
valid and invalid input. No answer may be a 5xx, and every answer must be one the schema
documents, with that status code, content type and body shape.

The app runs with its lifespan (migrated database, real Temporal dev server, a worker, so that
``wait=true`` cycles and report generation finish) under uvicorn on a free port; schemathesis
sends real HTTP from a thread while the test's event loop serves it.

``ORCH_FUZZ_EXAMPLES`` examples (default 8) of each of valid input, invalid input and valid
input on the seeded rows' paths, per operation: CI's size is about 530 requests per backend.
The full size, about 8,000 per backend::

    ORCH_FUZZ_EXAMPLES=100 .venv/bin/pytest -q tests/api/test_api_fuzz.py
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.auth import KEY_HEADER
from db.commands.reports import ReportConfig, generate_report
from db.engine import create_engine, create_sessionmaker
from db.models import Alert, Event, Handoff
from orchestrator.settings import Settings
from pipeline.handoffs import handoff_id
from pipeline.reports import report_window
from tests.helpers.api import OPERATOR_KEY, api_client, free_port, served, with_keys
from tests.helpers.factories import add, mixed_history, prospect
from worker import build_worker

EXAMPLES = int(os.environ.get("ORCH_FUZZ_EXAMPLES", "8"))
# The event stream answers 200 and then streams for as long as the client listens (follow=true
# is its default): a fuzzer's request would never end. tests/api/test_events.py covers it.
STREAMING = ["/api/v1/events"]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
HEADERS = {KEY_HEADER: OPERATOR_KEY}
DAY = date(2026, 11, 10)
ENTERED = datetime(2026, 11, 9, 9, 0, tzinfo=UTC)
SEEDED = {
    "prospect_id": 1,
    "handoff_id": handoff_id(1, "identified", ENTERED),
    "alert_id": 1,
    "report_date": DAY.isoformat(),
    "name": "hygiene",
    "run_id": 1,
}
"""Path values that find the seeded rows, so the fuzzer reaches the code behind the 404s."""


# --- the live API ----------------------------------------------------------------------------


def _handoff(pid: int, status: str, entered: datetime) -> Handoff:
    return Handoff(
        id=handoff_id(pid, "identified", entered),
        prospect_id=pid,
        from_state="identified",
        state_entered_at=entered,
        to_agent="hygiene",
        status=status,
        attempt=1,
        workflow_id=f"handoff-{pid}",
        detail=None,
        result=None,
        created_at=entered,
        updated_at=entered,
        finished_at=None if status == "blocked" else entered,
    )


def _alert(n: int, status: str, now: datetime) -> Alert:
    return Alert(
        fingerprint=f"agent_health:hygiene:{n}",
        kind="agent_health",
        agent_name="hygiene",
        severity="warning",
        status=status,
        message=f"hygiene is degraded ({n})",
        details={"n": n},
        first_seen=now,
        last_seen=now,
        count=1,
        resolved_at=now if status == "resolved" else None,
    )


async def seed(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Runs, prospects, handoffs, alerts, events and stored reports: a little of everything
    the GET paths find."""
    now = datetime.now(UTC)
    prospects = [*prospect("disqualified", pid=1), *prospect("closed_lost", pid=2)]
    handoffs = [
        _handoff(1, "failed", ENTERED),
        _handoff(2, "completed", ENTERED),
        _handoff(1, "completed", ENTERED - timedelta(days=1)),
    ]
    alerts = [_alert(n, s, now) for n, s in enumerate(["open", "acknowledged", "resolved"], 1)]
    event = Event(
        dedup_key="fuzz-seed",
        kind="agent_unhealthy",
        agent_name="hygiene",
        payload={"status": "degraded"},
        created_at=now,
    )
    await add(sessionmaker, *mixed_history(now), *prospects, *handoffs, *alerts, event)
    config = ReportConfig(settings.agents, settings.health, settings.time_zone, settings.reports.at)
    _, end = report_window(DAY, settings.time_zone, settings.reports.at)
    for kind in ("daily", "weekly"):
        async with sessionmaker() as session:
            await generate_report(session, config, kind, DAY, end + timedelta(hours=1))


@pytest.fixture
async def owner_sessionmaker(
    db_url: str, engine: AsyncEngine
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions as the database's owner, who may write the agents' tables as well (the API's
    own connection may only read them on PostgreSQL)."""
    owner = create_engine(db_url)
    yield create_sessionmaker(owner)
    await owner.dispose()


@pytest.fixture
async def live_api(
    worker_settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    owner_sessionmaker: async_sessionmaker[AsyncSession],
    client: Client,
) -> AsyncIterator[str]:
    """The seeded API on a socket, with a worker for the cycles it starts; its base URL."""
    settings = with_keys(worker_settings)
    await seed(owner_sessionmaker, settings)
    app = create_app(settings, temporal_client=client)
    async with build_worker(client, sessionmaker, settings), served(app, free_port()) as url:
        yield url


# --- the fuzzer ------------------------------------------------------------------------------


def strategy(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Valid and invalid input, and valid input on the seeded rows' paths."""
    names = {p.name for p in operation.path_parameters}
    seeded = {k: v for k, v in SEEDED.items() if k in names}
    strategies = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if seeded:
        strategies.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=seeded))
    return st.one_of(strategies)


def fuzz_operation(
    operation: schemathesis.APIOperation, base_url: str, sent: list[int]
) -> dict[str, str]:
    """The first failing case of each kind (check and status code) of one operation, as
    schemathesis describes it, with a curl line to reproduce it."""
    failures: dict[str, str] = {}

    @settings(
        max_examples=EXAMPLES * 3,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy(operation))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=HEADERS, timeout=120)
        sent.append(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS, headers=HEADERS)
        except FailureGroup as group:
            for failure in group.exceptions:
                failures.setdefault(f"{failure.code} {response.status_code}", str(group))

    check()
    return failures


def fuzz(base_url: str) -> tuple[dict[str, dict[str, str]], int]:
    """Failures by operation, and how many requests were sent."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(path=STREAMING)
    sent: list[int] = []
    failures: dict[str, dict[str, str]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if found := fuzz_operation(operation, base_url, sent):
            failures[operation.label] = found
    return failures, len(sent)


async def test_the_api_answers_every_generated_request_as_its_schema_says(
    live_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    failures, cases = await asyncio.to_thread(fuzz, live_api)
    with capsys.disabled():
        print(f"\nschemathesis: {cases} requests")
    report = [
        f"{label} [{kind}]\n{text}"
        for label, found in failures.items()
        for kind, text in found.items()
    ]
    assert not failures, "\n\n".join(report)
    assert cases >= 100


# --- what it found ---------------------------------------------------------------------------

TOO_BIG = 2**63
FOUND = [
    ("GET", f"/api/v1/prospects/{TOO_BIG}/handoff", None),
    ("GET", f"/api/v1/handoffs?prospect_id={TOO_BIG}", None),
    ("POST", f"/api/v1/alerts/{TOO_BIG}/acknowledge", None),
    (
        "PATCH",
        f"/api/v1/agents/hygiene/runs/{TOO_BIG}",
        {"status": "failed", "completed_at": "2026-11-20T10:00:00Z"},
    ),
    ("POST", "/api/v1/agents/hygiene/pause", {"reason": "maintenance\x00"}),
    ("GET", "/api/v1/alerts?agent=hygiene%00", None),
    ("GET", "/api/v1/handoffs?agent=%00", None),
    ("GET", "/api/v1/handoffs?cursor=2026-11-20T10:00:00%2B00:00|1%00", None),
    ("GET", "/api/v1/agents/hygiene/runs?handoff_id=%00", None),
    ("POST", "/api/v1/handoffs/1:identified:0%00/retry", None),
    ("GET", "/api/v1/orchestrator/report/0", None),
    ("POST", "/api/v1/orchestrator/reports/86400/generate", None),
    # a wait too short to mean anything answered 504 while the cycle went on
    ("POST", "/api/v1/orchestrator/run?mode=full&wait=true&wait_seconds=5e-324", None),
    (
        "POST",
        "/api/v1/orchestrator/reports/2000-01-01/generate?kind=daily&wait_seconds=5e-324",
        None,
    ),
    ("POST", "/api/v1/orchestrator/run?mode=full&wait=true&wait_seconds=1e308", None),
]
"""Requests the fuzzer turned into 500s (ids past 64 bits, NUL characters on PostgreSQL) or
wrongly accepted (a number read as a Unix time where a date is due)."""


@pytest.mark.parametrize(("method", "path", "body"), FOUND, ids=[f"{m} {p}" for m, p, _ in FOUND])
async def test_input_the_fuzzer_found_is_a_422_saying_why(
    settings: Settings, engine: AsyncEngine, method: str, path: str, body: object
) -> None:
    async with api_client(settings) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
