"""A realistic pipeline, loaded fast: prospects, contacts, 5+ activities per prospect,
outreach sequences and agent runs, written with PostgreSQL ``COPY`` (asyncpg
``copy_records_to_table``) or SQLite ``executemany`` batches.

Everything happens strictly before ``NOW``, the end of the daily report's window, so the spec's
open-ended windows (``>= yesterday``) and ours (``[start, end)``) cover the same rows.

Shape, for ``prospects=N, pending=P, runs=R``:

- ``P`` live prospects wait for a handoff (in a trigger state, condition met); the rest are
  past the handoff states, or in a trigger state whose condition fails (scored tier B-D,
  research complete without an email or with tier C/D), or deleted.
- 1-2 contacts each (85% with an email), 5-7 activities each over 30 days (about 5% in the
  last 24 h), a sequence for every prospect that reached outreach.
- ``R`` agent runs started in the last 24 h over four agents with different error rates and
  yields, ``R/10`` older runs over the week before (all finished before the window opens), and
  an ``enricher`` agent that last ran three days ago (the spec says *unknown*, we say
  *failing*).

``python -m bench.generate --url URL --prospects 100000`` loads one into an empty, migrated
database (the benchmark calls :func:`load` itself).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

NOW = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
"""The instant every benchmark judges at: 08:00 UTC, where the daily report's window ends."""
DAY = timedelta(days=1)
AGENT_MIX = {  # share of runs, failure rate, mean records per success
    "prospector": (0.10, 0.05, 12),
    "hygiene": (0.40, 0.15, 25),
    "researcher": (0.20, 0.35, 2),
    "outreach": (0.30, 0.02, 9),
}
STOPPED_AGENT = "enricher"
EXPECTED = {"prospector": 10, "hygiene": 20, "researcher": 5, "outreach": 10, STOPPED_AGENT: 10}
"""Expected records per run of every agent both sides check."""

PENDING_STATES = (  # (state, share of the pending prospects, tiers)
    ("identified", 0.25, (None,)),
    ("needs_scoring", 0.15, (None, "C")),
    ("scored", 0.20, ("A1", "A2")),
    ("needs_research", 0.10, ("A1", "A2", "B")),
    ("research_complete", 0.15, ("A1", "A2", "B")),
    ("ready_for_outreach", 0.15, ("A1", "A2", "B")),
)
SETTLED_STATES = (  # states no trigger applies to, and their weights
    ("in_sequence", 20),
    ("replied", 5),
    ("sequence_finished", 15),
    ("nurture", 15),
    ("meeting_booked", 3),
    ("closed_lost", 12),
    ("disqualified", 20),
)
SEQUENCE_STATUS = {
    "in_sequence": "active",
    "replied": "completed",
    "sequence_finished": "completed",
    "meeting_booked": "completed",
    "closed_lost": "stopped",
}
ACTIVITY_TYPES = (
    ("status_change", 30),
    ("score_change", 15),
    ("research_completed", 10),
    ("email_sent", 25),
    ("email_received", 5),
    ("note", 15),
)
TIERS = ("A1", "A2", "B", "C", "D")

COLUMNS = {
    "prospects": (
        "id",
        "company_name",
        "domain",
        "status",
        "tier",
        "score",
        "status_changed_at",
        "created_at",
        "updated_at",
        "deleted_at",
    ),
    "contacts": ("id", "prospect_id", "name", "email", "title"),
    "activities": ("id", "prospect_id", "type", "details", "created_at"),
    "outreach_sequences": ("id", "prospect_id", "status", "started_at", "completed_at"),
    "agent_runs": (
        "id",
        "agent_name",
        "status",
        "started_at",
        "completed_at",
        "records_processed",
        "error",
        "handoff_id",
    ),
}
TIME_COLUMNS = {
    "status_changed_at",
    "created_at",
    "updated_at",
    "deleted_at",
    "started_at",
    "completed_at",
}
DB_ORDER = tuple(COLUMNS)


@dataclass
class Shape:
    prospects: int
    pending: int
    runs: int
    seed: int = 7
    id_offset: int = 0
    """Added to every prospect id (the Temporal benchmarks keep their ids apart)."""


@dataclass
class Counts:
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DB_ORDER, 0))
    seconds: float = 0.0


class _Ids:
    def __init__(self) -> None:
        self.next = dict.fromkeys(DB_ORDER, 0)

    def take(self, table: str) -> int:
        self.next[table] += 1
        return self.next[table]


def _ago(rng: random.Random, lo: timedelta, hi: timedelta) -> datetime:
    """An instant between ``hi`` and ``lo`` before ``NOW`` (never ``NOW`` itself)."""
    span = (hi - lo).total_seconds()
    return NOW - lo - timedelta(seconds=1 + rng.random() * max(span - 2, 0))


def _recent_or_old(rng: random.Random, recent: float, oldest: timedelta) -> datetime:
    if rng.random() < recent:
        return _ago(rng, timedelta(0), DAY)
    return _ago(rng, DAY, oldest)


def _plan(shape: Shape) -> list[tuple[str, str | None, bool, bool]]:
    """(state, tier, needs an email contact, deleted) for each prospect, shuffled."""
    rng = random.Random(shape.seed)
    plan: list[tuple[str, str | None, bool, bool]] = []
    pending = min(shape.pending, shape.prospects)
    for i, (state, share, tiers) in enumerate(PENDING_STATES):
        n = round(pending * share) if i < len(PENDING_STATES) - 1 else pending - len(plan)
        for _ in range(n):
            plan.append((state, rng.choice(tiers), state == "research_complete", False))
    rest = shape.prospects - len(plan)
    states, weights = zip(*SETTLED_STATES, strict=True)
    for i in range(rest):
        kind = i % 50
        if kind == 0:  # a deleted prospect that would otherwise be pending
            plan.append(("identified", None, False, True))
        elif kind in (1, 2):  # scored below the research tiers
            plan.append(("scored", rng.choice(("B", "C", "D")), False, False))
        elif kind == 3:  # research complete, no contact with an email
            plan.append(("research_complete", rng.choice(("A1", "B")), False, False))
        elif kind == 4:  # research complete, tier too low
            plan.append(("research_complete", rng.choice(("C", "D")), True, False))
        else:
            plan.append((rng.choices(states, weights)[0], rng.choice(TIERS), False, False))
    rng.shuffle(plan)
    return plan


def generate(shape: Shape, chunk: int = 20_000) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """Rows, table by table, ``chunk`` prospects at a time (then the agent runs)."""
    rng = random.Random(shape.seed + 1)
    ids = _Ids()
    plan = _plan(shape)
    types, type_weights = zip(*ACTIVITY_TYPES, strict=True)
    for lo in range(0, len(plan), chunk):
        rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in DB_ORDER}
        for offset, (state, tier, email_needed, deleted) in enumerate(plan[lo : lo + chunk]):
            pid = shape.id_offset + lo + offset + 1
            created = _recent_or_old(rng, 0.03, timedelta(days=60))
            changed = created + (NOW - created) * rng.random() * 0.5
            score = None if tier is None else round(rng.uniform(10, 99), 1)
            rows["prospects"].append(
                (
                    pid,
                    f"Company {pid}",
                    f"c{pid}.example",
                    state,
                    tier,
                    score,
                    changed,
                    created,
                    changed,
                    changed if deleted else None,
                )
            )
            with_email = email_needed or (state != "research_complete" and rng.random() < 0.85)
            for c in range(rng.choice((1, 1, 2))):
                cid = ids.take("contacts")
                email = f"p{cid}@c{pid}.example" if with_email and c == 0 else None
                rows["contacts"].append((cid, pid, f"Contact {cid}", email, "VP Sales"))
            for _ in range(rng.randint(5, 7)):
                kind = rng.choices(types, type_weights)[0]
                details = {"from": "identified", "to": state} if kind == "status_change" else {}
                at = _recent_or_old(rng, 0.05, timedelta(days=30))
                rows["activities"].append(
                    (ids.take("activities"), pid, kind, json.dumps(details), at)
                )
            if (seq := SEQUENCE_STATUS.get(state)) is not None:
                started = _ago(rng, timedelta(hours=2), timedelta(days=40))
                done = None
                if seq == "completed":
                    done = started + (NOW - started) * rng.uniform(0.3, 0.99)
                rows["outreach_sequences"].append(
                    (ids.take("outreach_sequences"), pid, seq, started, done)
                )
        yield rows
    yield from _agent_runs(shape, rng, ids, chunk * 5)


def _agent_runs(
    shape: Shape, rng: random.Random, ids: _Ids, chunk: int
) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    agents = list(AGENT_MIX)
    shares = [AGENT_MIX[a][0] for a in agents]
    window, history = (timedelta(0), DAY - timedelta(minutes=15)), (DAY * 1.01, DAY * 8)
    plan = [(window, shape.runs), (history, shape.runs // 10)]
    rows: list[tuple[Any, ...]] = []
    for (lo, hi), n in plan:
        for _ in range(n):
            agent = rng.choices(agents, shares)[0]
            _, fail_rate, mean_records = AGENT_MIX[agent]
            rows.append(_run(ids.take("agent_runs"), agent, rng, lo, hi, fail_rate, mean_records))
            if len(rows) >= chunk:
                yield {"agent_runs": rows}
                rows = []
    for _ in range(50):  # the stopped agent: ran three days ago, not since
        lo, hi = DAY * 3, DAY * 3.5
        rows.append(_run(ids.take("agent_runs"), STOPPED_AGENT, rng, lo, hi, 0.1, 10))
    yield {"agent_runs": rows}


def _run(
    rid: int, agent: str, rng: random.Random, lo: timedelta, hi: timedelta, fail: float, mean: int
) -> tuple[Any, ...]:
    started = _ago(rng, lo + timedelta(minutes=11), hi)
    roll = rng.random()
    status = "running" if roll < 0.01 else "failed" if roll < 0.01 + fail else "completed"
    done = None if status == "running" else started + timedelta(seconds=rng.uniform(5, 600))
    records = max(0, round(rng.gauss(mean, mean / 3))) if status == "completed" else None
    if status == "completed" and rng.random() < 0.02:
        records = None  # the spec counts a missing count as 0; so do we
    error = "upstream timeout" if status == "failed" else None
    return (rid, agent, status, started, done, records, error, None)


# --- loading --------------------------------------------------------------------------------


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):  # SQLAlchemy's SQLite DATETIME format, naive UTC
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


async def load(
    engine: AsyncEngine, shape: Shape, progress: Callable[[str], None] | None = None
) -> Counts:
    """Generate and write ``shape`` into the (migrated, empty) database behind ``engine``."""
    say = progress or (lambda _msg: None)
    counts = Counts()
    began = time.perf_counter()
    url = make_url(str(engine.url.render_as_string(hide_password=False)))
    if url.get_backend_name() == "sqlite":
        writer: _Writer = _SqliteWriter(url.database or "")
    else:
        writer = _PgWriter(engine)
    await writer.open()
    try:
        last = 0.0
        for batch in generate(shape):
            for table in DB_ORDER:
                if rows := batch.get(table):
                    await writer.write(table, rows)
                    counts.rows[table] += len(rows)
            if time.perf_counter() - last > 2:
                last = time.perf_counter()
                done = ", ".join(f"{t} {n:,}" for t, n in counts.rows.items())
                say(f"  loading: {done} ({last - began:.0f} s)")
        await writer.finish()
    finally:
        await writer.close()
    counts.seconds = time.perf_counter() - began
    total = sum(counts.rows.values())
    say(f"  loaded {total:,} rows in {counts.seconds:.1f} s ({total / counts.seconds:,.0f}/s)")
    return counts


class _Writer:
    async def open(self) -> None: ...
    async def write(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None: ...
    async def finish(self) -> None: ...
    async def close(self) -> None: ...


class _SqliteWriter(_Writer):
    """The standard library driver straight to the file: no ORM, one transaction per batch."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.conn = sqlite3.connect(self.path)
        self.conn.execute("PRAGMA synchronous=OFF")

    async def write(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        assert self.conn is not None
        columns = COLUMNS[table]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with self.conn:
            self.conn.executemany(sql, [tuple(map(_sqlite_value, r)) for r in rows])

    async def finish(self) -> None:
        assert self.conn is not None
        self.conn.execute("ANALYZE")
        self.conn.commit()

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class _PgWriter(_Writer):
    """``COPY ... FROM STDIN`` (binary) through the engine's own asyncpg connection."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.conn: Any = None
        self.raw: Any = None

    async def open(self) -> None:
        self.conn = await self.engine.connect()
        self.raw = (await self.conn.get_raw_connection()).driver_connection

    async def write(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.raw.copy_records_to_table(table, records=rows, columns=COLUMNS[table])

    async def finish(self) -> None:
        for table in DB_ORDER:  # later inserts (the stand-in agents' activities) need ids
            await self.raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)"
            )
        await self.raw.execute("VACUUM ANALYZE")

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


def main(argv: Sequence[str] | None = None) -> None:
    from db.engine import create_engine
    from db.migrate import upgrade

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="an empty database (it is migrated first)")
    parser.add_argument("--prospects", type=int, default=10_000)
    parser.add_argument("--pending", type=int, default=None, help="default: prospects / 10")
    parser.add_argument("--runs", type=int, default=None, help="default: as many as prospects")
    args = parser.parse_args(argv)
    shape = Shape(
        prospects=args.prospects,
        pending=args.pending if args.pending is not None else args.prospects // 10,
        runs=args.runs if args.runs is not None else args.prospects,
    )

    async def go() -> None:
        engine = create_engine(args.url)
        try:
            await upgrade(engine)
            await load(engine, shape, lambda msg: print(msg, file=sys.stderr, flush=True))
        finally:
            await engine.dispose()

    asyncio.run(go())


if __name__ == "__main__":
    main()
