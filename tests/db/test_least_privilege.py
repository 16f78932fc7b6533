"""Least privilege on PostgreSQL: the ``orchestrator`` role reads the agents' tables and
cannot write them, whatever the code tries; the ingest role writes ``agent_runs`` only.

The other tests run the orchestrator as this role too (``engine`` and ``settings`` in
conftest.py), so any orchestrator path that wrote agent data would fail there as well.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from cli.app import app
from db.engine import create_engine
from db.models import Prospect
from db.roles import (
    AGENT_TABLES,
    LOCK_TABLE,
    RoleError,
    Roles,
    grant_roles,
    orchestrator_tables,
    scram_verifier,
    write_privileges,
)
from tests.helpers.factories import add, held_lease, prospect
from tests.helpers.pg import PgCluster, as_role

Maker = async_sessionmaker[AsyncSession]
ROLES = Roles()
PERMISSION_DENIED = "42501"
WRITES = {
    "INSERT": "INSERT INTO {t} SELECT * FROM {t} WHERE false",
    "UPDATE": "UPDATE {t} SET id = id WHERE false",
    "DELETE": "DELETE FROM {t} WHERE false",
    "TRUNCATE": "TRUNCATE {t}",
}
runner = CliRunner()


@pytest.fixture
async def db_url(pg_cluster: PgCluster) -> AsyncIterator[str]:
    """Only PostgreSQL here: SQLite has no roles."""
    name = await pg_cluster.create_database()
    yield pg_cluster.url(name)
    await pg_cluster.drop_database(name)


@pytest.fixture
async def ingest_engine(db_url: str, owner_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(as_role(db_url, ROLES.ingest))
    yield engine
    await engine.dispose()


async def denied(engine: AsyncEngine, statement: str) -> bool:
    """Whether PostgreSQL refuses ``statement`` for lack of privilege (not for any other
    reason: a typo must not pass as a refusal)."""
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    except DBAPIError as exc:
        assert exc.orig.sqlstate == PERMISSION_DENIED, exc  # type: ignore[union-attr]
        return True
    return False


async def owner_of(engine: AsyncEngine, relation: str) -> str:
    query = "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(:r)"
    async with engine.connect() as conn:
        return str(await conn.scalar(text(query), {"r": relation}))


@pytest.mark.parametrize("table", AGENT_TABLES)
@pytest.mark.parametrize("write", sorted(WRITES))
async def test_the_orchestrator_cannot_write_an_agent_table(
    engine: AsyncEngine, table: str, write: str
) -> None:
    assert await denied(engine, WRITES[write].format(t=table))


async def test_the_orchestrator_reads_every_agent_table(engine: AsyncEngine) -> None:
    for table in (*AGENT_TABLES, LOCK_TABLE):
        assert not await denied(engine, f"SELECT count(*) FROM {table}")


async def test_changing_a_prospect_through_the_orm_fails_and_leaves_it(
    sessionmaker: Maker, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1))
    async with sessionmaker() as session:
        row = await session.get(Prospect, 1)
        assert row is not None
        row.status = "scored"
        with pytest.raises(DBAPIError) as raised:
            await session.commit()
    assert raised.value.orig.sqlstate == PERMISSION_DENIED  # type: ignore[union-attr]
    async with agent_sessionmaker() as session:
        assert (await session.get(Prospect, 1)).status == "identified"  # type: ignore[union-attr]


async def test_the_orchestrator_takes_renews_and_releases_record_leases(
    engine: AsyncEngine, agent_sessionmaker: Maker
) -> None:
    await add(agent_sessionmaker, *prospect("identified", pid=1), held_lease(1, "hygiene"))
    assert not await denied(engine, "UPDATE record_locks SET expires_at = now()")
    assert not await denied(engine, "DELETE FROM record_locks")
    take = (
        "INSERT INTO record_locks (prospect_id, agent_name, run_id, acquired_at, expires_at) "
        "VALUES (1, 'researcher', 'h-1', now(), now() + interval '1 hour')"
    )
    assert not await denied(engine, take)
    assert await denied(engine, "TRUNCATE record_locks")


async def test_the_orchestrator_owns_its_tables_and_their_sequences(
    owner_engine: AsyncEngine,
) -> None:
    for table in orchestrator_tables():
        assert await owner_of(owner_engine, table) == ROLES.orchestrator, table
    ours = {f"{table}_id_seq" for table in orchestrator_tables()}
    query = "SELECT relname, pg_get_userbyid(relowner) FROM pg_class WHERE relkind = 'S'"
    async with owner_engine.connect() as conn:
        sequences = {name: owner for name, owner in await conn.execute(text(query))}
    assert {"alerts_id_seq", "events_id_seq", "prospects_id_seq"} <= sequences.keys()
    for sequence, owner in sequences.items():
        assert owner == (ROLES.orchestrator if sequence in ours else "postgres"), sequence
    for table in (*AGENT_TABLES, LOCK_TABLE):
        assert await owner_of(owner_engine, table) == "postgres", table


async def test_the_ingest_role_writes_agent_runs_and_nothing_else(
    ingest_engine: AsyncEngine,
) -> None:
    record = (
        "INSERT INTO agent_runs (agent_name, status, started_at) "
        "VALUES ('hygiene', 'running', now()) RETURNING id"
    )
    assert not await denied(ingest_engine, record)
    assert not await denied(ingest_engine, "UPDATE agent_runs SET status = 'completed'")
    assert await denied(ingest_engine, "DELETE FROM agent_runs")
    assert await denied(ingest_engine, "UPDATE prospects SET status = status")
    assert await denied(ingest_engine, "SELECT count(*) FROM prospects")
    assert await denied(ingest_engine, "DELETE FROM record_locks")
    assert await denied(ingest_engine, "SELECT count(*) FROM handoffs")


async def test_granting_twice_changes_nothing(
    owner_engine: AsyncEngine, engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        again = await grant_roles(conn, ROLES)
    assert again.created == []
    assert again.owned == orchestrator_tables()
    assert await denied(engine, "UPDATE prospects SET status = status")
    assert not await denied(engine, "DELETE FROM record_locks")


async def test_a_role_widened_by_hand_is_narrowed_again(
    owner_engine: AsyncEngine, engine: AsyncEngine
) -> None:
    async with owner_engine.begin() as conn:
        await conn.execute(text(f"GRANT ALL ON prospects TO {ROLES.orchestrator}"))
    assert not await denied(engine, "UPDATE prospects SET status = status")
    async with owner_engine.begin() as conn:
        await grant_roles(conn, ROLES)
    assert await denied(engine, "UPDATE prospects SET status = status")


async def test_membership_in_the_owner_role_is_refused(owner_engine: AsyncEngine) -> None:
    """A member of the tables' owner could write them: the command must not call that
    least privilege. Roles of its own, all rolled back: roles belong to the whole cluster."""
    leaky_roles = Roles("orch_leaky", "orch_leaky_ingest")
    async with owner_engine.connect() as conn:
        await conn.execute(text("CREATE ROLE agents_owner_probe NOLOGIN"))
        await conn.execute(text("ALTER TABLE prospects OWNER TO agents_owner_probe"))
        await grant_roles(conn, leaky_roles)
        await conn.execute(text(f"GRANT agents_owner_probe TO {leaky_roles.orchestrator}"))
        leaks = await write_privileges(conn, leaky_roles.orchestrator, ["prospects"])
        assert leaks == [f"orch_leaky can {w} prospects" for w in WRITES]
        with pytest.raises(RoleError, match="least privilege not reached"):
            await grant_roles(conn, leaky_roles)
        await conn.rollback()


async def test_the_verifier_is_the_one_postgresql_computes(owner_engine: AsyncEngine) -> None:
    password = "pa'ss wörd$1"
    async with owner_engine.connect() as conn:
        await conn.execute(text("SET LOCAL password_encryption = 'scram-sha-256'"))
        await conn.execute(text("CREATE ROLE verifier_probe"))
        await conn.execute(text("ALTER ROLE verifier_probe PASSWORD 'pa''ss wörd$1'"))
        stored = await conn.scalar(
            text("SELECT rolpassword FROM pg_authid WHERE rolname = 'verifier_probe'")
        )
        await conn.rollback()
    iterations, salt = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$.*", stored).groups()  # type: ignore[union-attr]
    mine = scram_verifier(password, salt=base64.b64decode(salt), iterations=int(iterations))
    assert mine == stored


# --- the command ------------------------------------------------------------------------


def test_the_command_grants_and_reports_what_it_did(
    cli_env: str, owner_engine: AsyncEngine
) -> None:
    result = runner.invoke(app, ["db", "grant-roles"])
    assert result.exit_code == 0, result.output
    assert "role orchestrator: exists" in result.output
    assert "role orchestrator_ingest: exists" in result.output
    assert "owns: handoffs" in re.sub(r"\s+", " ", result.output)


def test_the_command_sets_passwords_without_showing_them(
    cli_env: str, owner_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCH_ROLE_PASSWORD", "s3cret-orch")
    monkeypatch.setenv("ORCH_INGEST_ROLE_PASSWORD", "s3cret-ingest")
    args = ["db", "grant-roles", "--role", "orch_pw", "--ingest-role", "orch_pw_ingest"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "role orch_pw: created" in result.output
    assert "s3cret" not in result.output
    stored = asyncio.run(_passwords(cli_env, ["orch_pw", "orch_pw_ingest"]))
    assert all(p.startswith("SCRAM-SHA-256$4096:") for p in stored), stored


async def _passwords(url: str, roles: list[str]) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = "SELECT rolpassword FROM pg_authid WHERE rolname = ANY(:r)"
            return list(await conn.scalars(text(query), {"r": roles}))
    finally:
        await engine.dispose()


def test_the_command_asks_for_an_upgrade_first(cli_env: str) -> None:
    result = runner.invoke(app, ["db", "grant-roles"])
    assert result.exit_code == 2
    assert "run `orchestrator db upgrade` first" in re.sub(r"\s+", " ", result.output)


def test_the_command_has_nothing_to_do_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'orchestrator.db'}"
    result = runner.invoke(app, ["db", "grant-roles", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert "nothing to do" in result.output


def test_the_verifier_keeps_the_password_out_of_it() -> None:
    verifier = scram_verifier("hunter2", salt=b"0" * 16)
    assert "hunter2" not in verifier
    assert verifier == scram_verifier("hunter2", salt=b"0" * 16)
    assert verifier != scram_verifier("hunter3", salt=b"0" * 16)
