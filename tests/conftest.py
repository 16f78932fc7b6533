"""Shared fixtures: real databases (SQLite and a throwaway PostgreSQL cluster) migrated with
Alembic, and a real Temporal dev server started from the installed ``temporal`` binary."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.roles import Roles, grant_roles, is_postgres
from orchestrator.settings import Settings, TemporalSettings, get_settings
from tests.helpers.agents import FakeAgent
from tests.helpers.devserver import start_dev_server, terminate_running
from tests.helpers.handoffs import AGENTS
from tests.helpers.pg import PgCluster, PostgresUnavailable, as_role, start_cluster

REQUIRE_POSTGRES = os.environ.get("ORCH_REQUIRE_POSTGRES") == "1"
# every workflow runs in the SDK's determinism sandbox under test, the handoff too (in
# production it runs outside it, for speed); worker subprocesses inherit this
os.environ.setdefault("ORCH_WORKER__SANDBOX_ALL", "true")
BACKENDS = ["sqlite", "postgres"]
TIERS = ("unit", "db", "workflows", "api", "integration", "chaos", "browser", "bench")
"""Each folder under tests/ is a tier and a marker of the same name: ``make test-fast`` runs
``unit``, ``db``, ``workflows`` and ``api`` (``-m "not integration and not chaos and not
browser and not bench"``); ``make test`` runs them all."""
ROLES = Roles()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"ORCH_REQUIRE_POSTGRES=1 but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL on each backend, connecting as its owner (the superuser,
    who also owns the agents' tables)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = await cluster.create_database()
    yield cluster.url(name)
    await cluster.drop_database(name)


@pytest.fixture
async def owner_engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The database migrated by its owner (``alembic upgrade head``) and, on PostgreSQL, the
    least-privilege roles granted, as the DBA does before the orchestrator starts."""
    engine = create_engine(db_url)
    await upgrade(engine)
    if is_postgres(db_url):
        async with engine.begin() as conn:
            await grant_roles(conn, ROLES)
    yield engine
    await engine.dispose()


@pytest.fixture
def orchestrator_url(db_url: str, owner_engine: AsyncEngine) -> str:
    """Where orchestrator code connects: the ``orchestrator`` role on PostgreSQL, which may
    only read the agents' tables, so a write to them fails the test."""
    return as_role(db_url, ROLES.orchestrator)


@pytest.fixture
async def engine(
    db_url: str, orchestrator_url: str, owner_engine: AsyncEngine
) -> AsyncIterator[AsyncEngine]:
    """The migrated database as the orchestrator sees it (one engine on SQLite, which has no
    roles)."""
    if not is_postgres(db_url):
        yield owner_engine
        return
    engine = create_engine(orchestrator_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for orchestrator code (activities, the API)."""
    return create_sessionmaker(engine)


@pytest.fixture
def agent_sessionmaker(
    db_url: str, owner_engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> async_sessionmaker[AsyncSession]:
    """Sessions that write the agents' rows as an agent would: the tables' owner on
    PostgreSQL, the same sessions as ``sessionmaker`` on SQLite."""
    return create_sessionmaker(owner_engine) if is_postgres(db_url) else sessionmaker


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    await env.shutdown()


@pytest.fixture
async def client(temporal_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """The shared dev server's client. Whatever a test leaves running there is terminated
    when it ends: handoff ids are ``handoff-<pid>`` whatever the task queue, so a handoff a
    stopped worker left open would make a later test's handoff of the same pid wait on it."""
    yield temporal_env.client
    await terminate_running(temporal_env.client)


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(db_url: str, orchestrator_url: str, tmp_path: Path, task_queue: str) -> Settings:
    """Settings pointing at this test's database (as the orchestrator role, and the ingest
    role for run ingestion) and task queue."""
    return Settings(
        state_dir=tmp_path / "state",
        database_url=orchestrator_url,
        ingest_database_url=as_role(db_url, ROLES.ingest) if is_postgres(db_url) else None,
        temporal=TemporalSettings(task_queue=task_queue),
    )


@pytest.fixture
def worker_settings(settings: Settings, client: Client) -> Settings:
    """``settings`` pointed at the test Temporal server as well."""
    temporal = settings.temporal.model_copy(
        update={"address": client.service_client.config.target_host}
    )
    return settings.model_copy(update={"temporal": temporal})


@pytest.fixture
def agents(agent_sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, FakeAgent]:
    """Stand-in hygiene, researcher and outreach agents writing to this test's database."""
    return {name: FakeAgent(name, agent_sessionmaker) for name in AGENTS}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier: the folder it lives in."""
    here = Path(__file__).parent
    for item in items:
        folder = Path(str(item.path)).relative_to(here).parts[0]
        if folder in TIERS:
            item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The CLI configured for this test's database (the environment a user sets); yields
    its URL. Settings a developer may have exported are cleared."""
    monkeypatch.setenv("ORCH_DATABASE_URL", db_url)
    monkeypatch.setenv("ORCH_STATE_DIR", str(tmp_path / "state"))
    for name in ("ORCH_TIME_ZONE", "ORCH_REPORTS__AT", "ORCH_REPORTS__WEEKLY_DAY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()
