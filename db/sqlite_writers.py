"""SQLite's one write lock, queued in the event loop instead of in SQLite's busy handler.

A SQLite file has one writer at a time. A connection that finds the lock taken waits in
SQLite's busy handler, which sleeps and retries (1, 2, 5 ... 100 ms): the lock is often free
for most of each sleep, and no waiter is first in line. Under a burst of handoffs the worker
has a hundred sessions at once, each writing for a millisecond, so that is where the time
went. Here the writers of one process wait for the file's turn on an ``asyncio.Lock`` (first
come, first served, woken the moment the holder commits); only writers of *other* processes
still meet the busy handler, and they are few (the API, an agent).

The turn is taken where pysqlite begins a write transaction (its first INSERT, UPDATE, DELETE
or REPLACE, see :data:`db.engine.SQLITE_BEGIN`) and given back when the connection commits,
rolls back, closes or is stopped. Waiting for it is bounded by the same busy timeout, and
ends in the same ``sqlite3.OperationalError`` as a lock SQLite could not get.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

_WRITE_KEYWORDS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_TRANSACTION_ENDS = frozenset({"commit", "rollback", "close"})

_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def write_turn(database: str) -> asyncio.Lock:
    """The turn to write ``database`` for this event loop, shared by every engine on it."""
    per_loop = _turns.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(database, asyncio.Lock())


def _begins_write(fn: Callable[..., Any], args: tuple[Any, ...]) -> bool:
    """Whether pysqlite would begin a transaction for this call (its own rule: the leading
    keyword of the statement)."""
    if getattr(fn, "__name__", "") not in ("execute", "executemany") or not args:
        return False
    return str(args[0]).lstrip().upper().startswith(_WRITE_KEYWORDS)


class QueuedWriterConnection(aiosqlite.Connection):
    """An aiosqlite connection that takes the file's write turn before its first write."""

    def __init__(
        self,
        connector: Callable[[], sqlite3.Connection],
        *,
        turn: asyncio.Lock,
        timeout: float,
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._turn = turn
        self._turn_timeout = timeout
        self._holds_turn = False

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._holds_turn and _begins_write(fn, args):
            await self._take_turn()
        try:
            return await super()._execute(fn, *args, **kwargs)
        finally:
            if self._holds_turn and self._ends_transaction(fn):
                self._give_turn_back()

    def stop(self) -> asyncio.Future[Any] | None:
        """A connection stopped mid-transaction (a cancelled checkout) gives its turn back."""
        if self._holds_turn:
            self._give_turn_back()
        return super().stop()

    def _ends_transaction(self, fn: Callable[..., Any]) -> bool:
        # a cursor's close is not the connection's: only the connection ends a transaction
        return getattr(fn, "__name__", "") in _TRANSACTION_ENDS and (
            getattr(fn, "__self__", None) is self._connection
        )

    async def _take_turn(self) -> None:
        try:
            await asyncio.wait_for(self._turn.acquire(), self._turn_timeout)
        except TimeoutError:
            raise sqlite3.OperationalError(
                f"database is locked: no write turn within {self._turn_timeout:g} s"
            ) from None
        self._holds_turn = True

    def _give_turn_back(self) -> None:
        self._holds_turn = False
        self._turn.release()


def queued_writer_creator(
    database: str, connect_args: tuple[Any, ...], connect_kwargs: dict[str, Any], timeout: float
) -> Callable[[], QueuedWriterConnection]:
    """An ``async_creator`` for SQLAlchemy: connections to ``database`` that queue their
    writes on its turn; ``connect_args``/``connect_kwargs`` are what ``sqlite3.connect``
    would have been given by the dialect."""

    def create() -> QueuedWriterConnection:
        connector = partial(sqlite3.connect, *connect_args, **connect_kwargs)
        return QueuedWriterConnection(connector, turn=write_turn(database), timeout=timeout)

    return create
