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
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from orchestrator.devserver import find_binary
from orchestrator.settings import Settings, TemporalSettings
from tests.agents import FakeAgent
from tests.handoff_support import AGENTS
from tests.pg import PgCluster, PostgresUnavailable, start_cluster
from workflows.search_attributes import ALL

REQUIRE_POSTGRES = os.environ.get("ORCH_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgres"]


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
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}"
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = await cluster.create_database()
    yield cluster.url(name)
    await cluster.drop_database(name)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database (``alembic upgrade head``), as the app would see it."""
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(find_binary("temporal")),
        data_converter=pydantic_data_converter,
        search_attributes=ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(db_url: str, tmp_path: Path, task_queue: str) -> Settings:
    """Settings pointing at this test's database and task queue."""
    return Settings(
        state_dir=tmp_path / "state",
        database_url=db_url,
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
def agents(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, FakeAgent]:
    """Stand-in hygiene, researcher and outreach agents writing to this test's database."""
    return {name: FakeAgent(name, sessionmaker) for name in AGENTS}
