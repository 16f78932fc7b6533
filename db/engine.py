"""The async engine and session factory. One session per request or activity call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a write transaction waits for SQLite's write lock: a bound, not a wait, since
each one holds the lock for its own few statements (:data:`SQLITE_BEGIN`)."""


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url``. SQLite gets WAL and a busy timeout so the worker, the API and
    the simulated agents can share one file, foreign keys switched on as PostgreSQL has
    them, and the locking rule of :data:`SQLITE_BEGIN`. PostgreSQL is left as it is."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_async_engine(url, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": SQLITE_BEGIN}
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


SQLITE_BEGIN = "IMMEDIATE"
"""The locking rule on SQLite: a transaction begins at its first write, with
``BEGIN IMMEDIATE``, so it holds the write lock from before that write to its commit; reads
outside a write transaction take no lock and never wait.

Why this and not the alternatives. In WAL mode a transaction that *reads first* holds a
snapshot, and when it then writes after another writer committed SQLite answers
SQLITE_BUSY_SNAPSHOT ("database is locked") at once: no busy timeout helps, since waiting
cannot make its snapshot current. A transaction that begins at its first write holds no
snapshot while it waits for the lock, so the busy timeout does its job. Making every
transaction, reads included, ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe of taking over BEGIN)
avoids the snapshot too, but turns every session into a holder of the one write lock for as
long as it stays open, and sessions here read, then call Temporal or wait on a peer, before
they write or close: tried under load, a stop then waited on sessions stuck behind one
another. Writers-only by a marker per session would need every caller to say which kind it
is. So pysqlite's own transaction control does it: it sends this ``BEGIN`` before the first
INSERT, UPDATE or DELETE of a transaction. Reads before that see the latest commit, statement
by statement, as they do on PostgreSQL (read committed), so the code's rules for
concurrent writers are the same on both. What callers owe: a write transaction is short (no
Temporal call, no agent latency, between its first write and its commit)."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
