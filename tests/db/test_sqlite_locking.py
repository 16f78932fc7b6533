"""The embedded default under concurrent writers: no "database is locked", ever.

Through ``db.engine``'s engine on a real SQLite file in WAL mode: one writer reads a row,
waits, then writes it; another writes meanwhile and commits first. A transaction that held a
read snapshot would get SQLITE_BUSY_SNAPSHOT at its write, which no busy timeout cures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, create_sessionmaker

ROUNDS = 40


@pytest.fixture
async def sqlite(
    tmp_path: Path,
) -> AsyncIterator[tuple[AsyncEngine, async_sessionmaker[AsyncSession]]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'locks.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        await conn.execute(text("INSERT INTO counter VALUES (1, 0), (2, 0)"))
    yield engine, create_sessionmaker(engine)
    await engine.dispose()


async def read_then_write(sessions: async_sessionmaker[AsyncSession], pause: float) -> None:
    async with sessions() as session:
        n = await session.scalar(text("SELECT n FROM counter WHERE id = 1"))
        await asyncio.sleep(pause)  # the other writer commits in here
        await session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
        await session.commit()


async def write(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        await session.execute(text("UPDATE counter SET n = n + 1 WHERE id = 2"))
        await session.commit()


async def test_a_read_then_write_beside_another_writer_is_never_locked_out(
    sqlite: tuple[AsyncEngine, async_sessionmaker[AsyncSession]],
) -> None:
    engine, sessions = sqlite
    for _ in range(ROUNDS):
        work = [read_then_write(sessions, 0.01), write(sessions), write(sessions)]
        results = await asyncio.gather(*work, return_exceptions=True)
        locked = [r for r in results if isinstance(r, OperationalError)]
        assert locked == [], locked[0]
        assert not [r for r in results if isinstance(r, BaseException)], results
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT n FROM counter WHERE id = 2")) == 2 * ROUNDS


async def test_a_cancelled_write_rolls_back_and_frees_the_lock_at_once(
    sqlite: tuple[AsyncEngine, async_sessionmaker[AsyncSession]],
) -> None:
    engine, sessions = sqlite
    holding = asyncio.Event()

    async def write_and_hang() -> None:
        async with sessions() as session:
            await session.execute(text("UPDATE counter SET n = 99 WHERE id = 1"))
            holding.set()
            await asyncio.sleep(3600)  # holds the write lock until cancelled

    hung = asyncio.create_task(write_and_hang())
    await holding.wait()
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    # far sooner than the busy timeout (30 s): the lock went with the rollback
    await asyncio.wait_for(write(sessions), 2)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT n FROM counter WHERE id = 1")) == 0
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
