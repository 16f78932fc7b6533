"""Is the database there, reachable and migrated? Asked before any command reads it.

Why a check of its own: the first query of a command against a database that is not ready
fails deep inside SQLAlchemy (``no such table: agent_run_hours``), and opening a SQLite URL
creates an empty file as a side effect. Here nothing is created: a missing SQLite file is
reported without being opened, and the probe's engine sets no pragmas (WAL would write).
Each problem is a typed error whose message says what is wrong and what to do.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from db.migrate import alembic_config
from orchestrator.settings import redact_url

PROBE_TIMEOUT_SECONDS = 10.0
"""A probe never waits longer: a firewalled host would otherwise hold it for minutes."""
UPGRADE_HINT = "run orchestrator db upgrade"
VERSION_TABLE = "alembic_version"


class DatabaseNotReady(RuntimeError):
    """The database cannot be used as it is; the message says why and what to do."""


class DatabaseMissing(DatabaseNotReady):
    pass


class DatabaseUnreachable(DatabaseNotReady):
    pass


class DatabaseCredentialsRejected(DatabaseNotReady):
    pass


class DatabaseNotMigrated(DatabaseNotReady):
    pass


@dataclass(frozen=True)
class Readiness:
    revision: str
    """The database's Alembic revision, which is the code's head."""


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; ``None`` for PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def require_reachable(url: str) -> str | None:
    """Connect once (creating nothing) and return the current revision; raises
    :class:`DatabaseNotReady` when the database is missing or cannot be reached."""
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        raise DatabaseMissing(
            f"no database at {path}: {UPGRADE_HINT} to create it, or set ORCH_DATABASE_URL"
        )
    try:
        return await asyncio.wait_for(_current_revision(url), PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        if (problem := as_not_ready(exc, url)) is None:
            raise
        raise problem from exc


async def require_migrated(url: str) -> Readiness:
    """:func:`require_reachable`, and at the code's head revision."""
    current, head = await require_reachable(url), head_revision()
    where = redact_url(url)
    if current is None:
        raise DatabaseNotMigrated(f"database at {where} is not migrated: {UPGRADE_HINT}")
    if current != head:
        raise DatabaseNotMigrated(
            f"database at {where} is at revision {current}, not {head}: {UPGRADE_HINT}"
            " (or run the orchestrator version that migrated it)"
        )
    return Readiness(revision=current)


async def _current_revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_stamped_revision)
    finally:
        await engine.dispose()


def _stamped_revision(conn: Connection) -> str | None:
    """Alembic's stamp, read directly: its MigrationContext would log as it configures."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def as_not_ready(exc: BaseException, url: str) -> DatabaseNotReady | None:
    """The driver's error for a database that cannot be used, as one of ours; ``None`` when
    ``exc`` is not about reaching the database. PostgreSQL's SQLSTATE decides, not text."""
    where = redact_url(url)
    if isinstance(exc, DatabaseNotReady):
        return exc
    if isinstance(exc, OSError | TimeoutError):
        return DatabaseUnreachable(
            f"cannot reach the database at {where} ({_reason(exc)}): start it, "
            "or check ORCH_DATABASE_URL"
        )
    state = getattr(getattr(exc, "orig", None), "sqlstate", None) or ""
    if isinstance(exc, DBAPIError) and state.startswith("28"):
        return DatabaseCredentialsRejected(
            f"the database at {where} refused the login: check the user and password "
            "in ORCH_DATABASE_URL"
        )
    if isinstance(exc, DBAPIError) and state == "3D000":
        return DatabaseMissing(
            f"database at {where} does not exist: create it (createdb), then {UPGRADE_HINT}"
        )
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_SECONDS:.0f} s"
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno).lower()  # asyncio's text names the address again
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
