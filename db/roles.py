"""Least privilege on PostgreSQL: the roles the orchestrator and the run-ingestion endpoint
connect as, so that "the orchestrator never modifies the agents' data" is enforced by the
database and not only promised by the code.

``orchestrator db grant-roles`` runs :func:`grant_roles` as the DBA (a superuser) after every
``orchestrator db upgrade``. Every statement is idempotent, so running it again after a
migration also covers tables the migration added. It ends by asking the database what the
roles can do, and refuses to report success while the orchestrator can still write an agent's
table (say, because someone made it a superuser or a member of the tables' owner).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from db.engine import create_engine
from db.models import Base

AGENT_TABLES = ("prospects", "contacts", "activities", "outreach_sequences", "agent_runs")
"""The agents' tables: the orchestrator may only read them."""
LOCK_TABLE = "record_locks"
LOCK_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
"""Not only releasing stale locks (DELETE): the handoff workflow takes the record lease for
the agent it triggers, and ``_take_lease`` in activities/handoffs.py inserts the lock row, or
renews its own or an expired one with an UPDATE."""
INGEST_TABLE = "agent_runs"
INGEST_PRIVILEGES = "SELECT, INSERT, UPDATE"
NOT_INGESTED = tuple(t for t in (*AGENT_TABLES, LOCK_TABLE) if t != INGEST_TABLE)
"""The tables the ingest role must not write."""
"""The ingestion routes record a run (INSERT), finish it (UPDATE) and list runs (SELECT)."""
WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class RoleError(RuntimeError):
    """The roles cannot be set up as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Roles:
    orchestrator: str = "orchestrator"
    ingest: str = "orchestrator_ingest"
    orchestrator_password: str | None = field(default=None, repr=False)
    ingest_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in (self.orchestrator, self.ingest):
            if not ROLE_NAME.fullmatch(name):
                raise RoleError(f"role name {name!r}: use lower-case letters, digits and _")
        if self.orchestrator == self.ingest:
            raise RoleError("the orchestrator and ingest roles must be two roles")


@dataclass
class GrantResult:
    created: list[str] = field(default_factory=list)
    """Roles that did not exist before this run."""
    owned: list[str] = field(default_factory=list)
    """Tables now owned by the orchestrator role."""


def orchestrator_tables() -> list[str]:
    """Every model table that is not the agents', and Alembic's: a new orchestrator table is
    covered without editing a list here."""
    theirs = {*AGENT_TABLES, LOCK_TABLE}
    return [name for name in Base.metadata.tables if name not in theirs] + ["alembic_version"]


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


async def grant_roles_at(url: str, roles: Roles) -> GrantResult:
    """:func:`grant_roles` on the database at ``url`` (an owner or superuser connection)."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await grant_roles(conn, roles)
    finally:
        await engine.dispose()


async def grant_roles(conn: AsyncConnection, roles: Roles) -> GrantResult:
    """Create the roles when missing, grant exactly what each needs, hand the orchestrator's
    tables to its role, then check no agent table is writable by the orchestrator."""
    await _require_schema(conn)
    result = GrantResult()
    for name, password in (
        (roles.orchestrator, roles.orchestrator_password),
        (roles.ingest, roles.ingest_password),
    ):
        if await _ensure_role(conn, name):
            result.created.append(name)
        if password is not None:
            # not text(): the verifier's colons would read as bind parameters
            verifier = scram_verifier(password)
            await conn.exec_driver_sql(f"ALTER ROLE {_q(name)} PASSWORD '{verifier}'")
    database = await conn.scalar(text("SELECT current_database()"))
    for statement in privilege_statements(roles, str(database)):
        await conn.execute(text(statement))
    result.owned = orchestrator_tables()
    await _refuse_leaks(conn, roles)
    return result


def privilege_statements(roles: Roles, database: str) -> list[str]:
    """The grants, each safe to run again. Privileges on tables a role does not own are
    revoked first, so a role someone widened by hand is narrowed back."""
    orch, ingest = _q(roles.orchestrator), _q(roles.ingest)
    agent_tables = ", ".join(AGENT_TABLES)
    statements = [
        f"GRANT CONNECT ON DATABASE {_q(database)} TO {orch}, {ingest}",
        f"GRANT USAGE ON SCHEMA public TO {orch}, {ingest}",
        f"REVOKE ALL ON {agent_tables}, {LOCK_TABLE} FROM {orch}",
        f"GRANT SELECT ON {agent_tables} TO {orch}",
        f"GRANT {LOCK_PRIVILEGES} ON {LOCK_TABLE} TO {orch}",
        f"GRANT USAGE ON SEQUENCE {LOCK_TABLE}_id_seq TO {orch}",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {ingest}",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {ingest}",
        f"GRANT {INGEST_PRIVILEGES} ON {INGEST_TABLE} TO {ingest}",
        f"GRANT USAGE ON SEQUENCE {INGEST_TABLE}_id_seq TO {ingest}",
    ]
    # a table's owner can do anything with it; its id sequences follow it to the new owner
    statements += [f"ALTER TABLE {table} OWNER TO {orch}" for table in orchestrator_tables()]
    return statements


async def _require_schema(conn: AsyncConnection) -> None:
    """Grants on a database that was not migrated would fail halfway; say so at once."""
    names = [*AGENT_TABLES, LOCK_TABLE, *orchestrator_tables()]
    missing_sql = "SELECT t FROM unnest(CAST(:names AS text[])) AS t WHERE to_regclass(t) IS NULL"
    found = await conn.execute(text(missing_sql), {"names": names})
    if missing := [row[0] for row in found]:
        raise RoleError(
            f"tables missing: {', '.join(missing)}; run `orchestrator db upgrade` first"
        )


async def _ensure_role(conn: AsyncConnection, name: str) -> bool:
    """Create a login role unless it exists (roles belong to the whole cluster, so another
    database may have made it); whether it was created now."""
    if await _role_exists(conn, name):
        return False
    await conn.execute(text(f"CREATE ROLE {_q(name)} LOGIN"))
    return True


async def _refuse_leaks(conn: AsyncConnection, roles: Roles) -> None:
    """Ask the database, not our grants: superuser, ownership or membership in an owner role
    would all let the orchestrator write agent data."""
    leaks = await write_privileges(conn, roles.orchestrator, AGENT_TABLES)
    leaks += await write_privileges(conn, roles.ingest, NOT_INGESTED)
    if leaks:
        raise RoleError(
            "least privilege not reached (is the role a superuser or a member of the tables' "
            f"owner?): {'; '.join(leaks)}"
        )


async def write_privileges(conn: AsyncConnection, role: str, tables: Sequence[str]) -> list[str]:
    """``table: PRIVILEGE`` for each write ``role`` holds on ``tables``, by any path."""
    return [
        f"{role} can {privilege} {table}"
        for table in tables
        for privilege in WRITES
        if await _can(conn, role, table, privilege)
    ]


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores, computed here (as ``psql \\password``
    does), so the password itself never reaches the server or its statement log.
    Normalised with NFKC, the core of PostgreSQL's SASLprep."""
    salt = salt or os.urandom(16)
    secret = unicodedata.normalize("NFKC", password).encode()
    salted = hashlib.pbkdf2_hmac("sha256", secret, salt, iterations)
    stored = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server = hmac.digest(salted, b"Server Key", "sha256")
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored)}:{_b64(server)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _q(identifier: str) -> str:
    """Quote an identifier (role and database names are checked or come from the server)."""
    return '"' + identifier.replace('"', '""') + '"'


NEEDED = (("prospects", "SELECT"), ("handoffs", "INSERT"))
"""What the orchestrator role must be able to do: read an agent's table, write its own."""


async def role_problems(conn: AsyncConnection, orchestrator: str, ingest: str) -> list[str]:
    """Why least privilege does not hold for these login roles (``orchestrator doctor``):
    a role missing, one that lacks what it needs, or one that can write what it must not."""
    names = list(dict.fromkeys((orchestrator, ingest)))
    if missing := [name for name in names if not await _role_exists(conn, name)]:
        return [f"role {name} does not exist" for name in missing]
    problems = [
        f"{orchestrator} cannot {privilege} {table}"
        for table, privilege in NEEDED
        if not await _can(conn, orchestrator, table, privilege)
    ]
    problems += await write_privileges(conn, orchestrator, AGENT_TABLES)
    return problems + await write_privileges(conn, ingest, NOT_INGESTED)


async def _role_exists(conn: AsyncConnection, name: str) -> bool:
    return bool(await conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}))


async def _can(conn: AsyncConnection, role: str, table: str, privilege: str) -> bool:
    query = text("SELECT has_table_privilege(:r, :t, :p)")
    return bool(await conn.scalar(query, {"r": role, "t": table, "p": privilege}))
