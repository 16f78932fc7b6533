"""Benchmarks, ours against the spec's baseline, side by side in one run: ``python -m bench.run``.

Figures (median of ``--repeat`` runs after a warm-up; the baseline gets ``--baseline-repeat``
runs and no warm-up; peak memory from one more run under ``tracemalloc``):

1. health check of every agent at each size's agent runs (all in the last 24 h): time, memory;
   goal < 100 ms, and ≥ 50x faster than the baseline at 1M runs;
2. daily report at each size's prospects: time, memory; goal < 2 s, ≥ 20x at 1M prospects, and
   peak memory not growing with prospects (largest size against the smallest);
3. all pages of pending handoffs (``--pending-share`` of the prospects wait): goal < 2 s;
4. handoff throughput through Temporal (dev server, the real worker, stand-in agents that
   answer at once) against the ceiling, an empty one-activity workflow on the same server;
   goal ≥ half the ceiling;
5. latency from an agent returning to the next agent's call starting, over chained handoffs
   (hygiene → researcher → outreach); goal p50 < 1 s;
6. the worker process's memory over one sweep of ``--sweep`` prospects (``bench.memory_bench``,
   rules in ``bench.memory_rules``), with one burst of open handoffs made on purpose a third
   of the way: at rest, the last tenth against the tenth after the burst; goal flat. What the
   burst leaves behind (after it against before) is a figure of its own, and the worker's CPU
   time per 1,000 handoffs is in the detail. ``--worker-malloc`` picks how the worker
   allocates: as the Docker image (Python objects through ``malloc``, jemalloc preloaded;
   the default), every Python object through glibc's ``malloc``, or Python's defaults;
7. commit to the first agent's call through the change feed (``bench.feed_bench``), prospects
   written one per commit by a plain writer at ``--feed-rate`` a second, idle and under a
   background load of half figure 8's rate, against the sweep path (feed stopped, the handoffs
   schedule every ``--sweep-period`` seconds) in the same run; goal p50 < 1 s, p99 < 2 s;
8. handoff throughput through the feed, ``--handoffs`` prospects in one commit, against the
   ceiling; goal ≥ 0.6 of it.

Figures 7 and 8 run on the largest size's database, the loaded table still in place (its
pending prospects get finished ledger rows first), right after that size's figures.

Every size is also a correctness oracle: ours and the baseline must agree on the counts, error
rates, averages and pending sets (``bench.db_bench``; what differs by design is not compared).
The exit status is 1 when they disagree, never because of a timing.

Sizes (each size N loads N prospects and N agent runs into a fresh database):

- ``--quick``: 500 and 2,000; 500 pending at 2,000; 200 handoffs; no sweep; the feed's 40
  commits a condition and a sweep every 10 s; about 2.5 minutes.
- default: 10,000 and 100,000; 1,000 handoffs; a sweep of 10,000; the feed's 120 commits a
  condition and a sweep every 30 s; about 22 minutes on PostgreSQL (2 cores; the feed's part
  about 5 of them).
- ``--full``: 10,000, 100,000 and 1,000,000 (100,000 pending); 5,000 handoffs; a sweep of
  100,000 (over an hour by itself at about 27 handoffs a second); the feed's 300 commits a
  condition on the million. Loading the
  million (about 8M rows) takes several minutes, the baseline's report and health check at a
  million take minutes each; plan on an hour or more.
- ``--sizes 10000,50000`` for any list.

Database: a throwaway PostgreSQL cluster started like the tests' (``tests/helpers/pg.py``; needs the
server binaries), or ``--database-url`` / ``ORCH_DATABASE_URL`` (must be an empty database; the
benchmark migrates it, fills it and empties it between sizes), or ``--backend sqlite`` (files
in a temporary directory). Results: a table on stdout and ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select

from bench.db_bench import DbBench
from bench.generate import Shape, load
from bench.memory_rules import ALLOCATORS
from bench.results import Check, Figure, Goal, table
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade
from db.models import AgentRun, Base, Prospect

RESULTS = Path(__file__).parent / "results" / "latest.json"
QUICK = {
    "sizes": [500, 2000],
    "pending_share": 0.25,
    "handoffs": 200,
    "chains": 50,
    "sweep": 0,
    "feed_commits": 40,
    "sweep_period": 10.0,
}
MEDIUM = {
    "sizes": [10_000, 100_000],
    "pending_share": 0.1,
    "handoffs": 1000,
    "chains": 100,
    "sweep": 10_000,
    "feed_commits": 120,
    "sweep_period": 30.0,
}
FULL = {
    "sizes": [10_000, 100_000, 1_000_000],
    "pending_share": 0.1,
    "handoffs": 5000,
    "chains": 500,
    "sweep": 100_000,
    "feed_commits": 300,
    "sweep_period": 30.0,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, under 2 minutes (CI)")
    size.add_argument("--full", action="store_true", help="up to 1M prospects and runs (long)")
    size.add_argument("--sizes", help="comma-separated sizes (prospects = agent runs)")
    parser.add_argument("--pending-share", type=float, help="share of prospects pending")
    parser.add_argument("--handoffs", type=int, help="prospects for the throughput figure")
    parser.add_argument("--chains", type=int, help="chained prospects for the latency figure")
    parser.add_argument(
        "--sweep", type=int, help="prospects in the worker-memory sweep (figure 6; 0 skips it)"
    )
    parser.add_argument(
        "--worker-malloc",
        choices=ALLOCATORS,
        default="image",
        help="how the figure 6 worker allocates: as the Docker image (default; needs Debian's "
        "libjemalloc2), every Python object through glibc's malloc, or Python's defaults",
    )
    parser.add_argument(
        "--chain-wave", type=int, default=10, help="chains started together (latency figure)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of ours (median)")
    parser.add_argument("--baseline-repeat", type=int, default=3, help="timed runs of the spec")
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ORCH_DATABASE_URL"),
        help="an EMPTY database to use instead of a throwaway one (default: ORCH_DATABASE_URL)",
    )
    parser.add_argument(
        "--feed-commits", type=int, help="prospects per condition of figure 7 (one per commit)"
    )
    parser.add_argument("--feed-rate", type=float, default=4.0, help="figure 7's commits a second")
    parser.add_argument(
        "--sweep-period", type=float, help="seconds between sweeps on figure 7's sweep path"
    )
    parser.add_argument("--no-temporal", action="store_true", help="skip figures 4 to 8")
    parser.add_argument("--no-feed", action="store_true", help="skip figures 7 and 8")
    parser.add_argument("--out", type=Path, default=RESULTS)
    opts = parser.parse_args(argv)
    preset = QUICK if opts.quick else FULL if opts.full else MEDIUM
    if opts.sizes:
        opts.sizes = [int(s.replace("_", "")) for s in opts.sizes.split(",")]
    else:
        opts.sizes = preset["sizes"]
    for key in ("pending_share", "handoffs", "chains", "sweep", "feed_commits", "sweep_period"):
        if getattr(opts, key) is None:
            setattr(opts, key, preset[key])
    if opts.quick:
        opts.repeat, opts.baseline_repeat = min(opts.repeat, 3), min(opts.baseline_repeat, 2)
    return opts


# --- where the databases come from ----------------------------------------------------------


class Target:
    """Hands out an empty database per size, and cleans up."""

    description = ""

    async def fresh(self, name: str) -> str:
        raise NotImplementedError

    async def release(self, url: str) -> None:
        return None

    async def close(self) -> None:
        return None


class SqliteTarget(Target):
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="orch-bench-"))
        self.description = f"SQLite files in {self.dir}"

    async def fresh(self, name: str) -> str:
        return f"sqlite+aiosqlite:///{self.dir / name}.db"

    async def release(self, url: str) -> None:
        _unlink_sqlite(url.removeprefix("sqlite+aiosqlite:///"))

    async def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _unlink_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(path + suffix).unlink(missing_ok=True)


class ClusterTarget(Target):
    def __init__(self, cluster: Any, own: bool) -> None:
        self.cluster, self.own = cluster, own
        self.names: dict[str, str] = {}
        self.description = f"PostgreSQL (throwaway cluster on port {cluster.port})"

    async def fresh(self, name: str) -> str:
        db = await self.cluster.create_database()
        url = self.cluster.url(db)
        self.names[url] = db
        return url

    async def release(self, url: str) -> None:
        await self.cluster.drop_database(self.names.pop(url))

    async def close(self) -> None:
        if self.own:
            self.cluster.stop()


class UrlTarget(Target):
    """A database someone gave us: it must start empty; we empty it again between uses."""

    def __init__(self, url: str) -> None:
        self.url, self.used = url, False
        self.description = f"{url.split('@')[-1]} (given)"

    async def fresh(self, name: str) -> str:
        engine = create_engine(self.url)
        try:
            await upgrade(engine)
            async with engine.begin() as conn:
                if not self.used:
                    for model in (Prospect, AgentRun):
                        if await conn.scalar(select(func.count()).select_from(model)):
                            raise SystemExit(
                                f"{self.description}: {model.__tablename__} is not empty; "
                                "the benchmark needs an empty database"
                            )
                for t in reversed(Base.metadata.sorted_tables):
                    await conn.execute(delete(t))
        finally:
            await engine.dispose()
        self.used = True
        return self.url


def open_target(opts: argparse.Namespace, cluster: Any = None) -> Target:
    if cluster is not None:
        return ClusterTarget(cluster, own=False)
    if opts.database_url:
        return UrlTarget(opts.database_url)
    if opts.backend == "sqlite":
        return SqliteTarget()
    from tests.helpers.pg import start_cluster

    return ClusterTarget(start_cluster(), own=True)


# --- the run --------------------------------------------------------------------------------


async def run_benchmarks(
    opts: argparse.Namespace, say: Callable[[str], None] = print, cluster: Any = None
) -> dict[str, Any]:
    """Run everything ``opts`` asks for; write and return the JSON document."""
    began = time.perf_counter()
    figures: list[Figure] = []
    checks: list[Check] = []
    feed: tuple[list[Figure], list[Check]] = ([], [])
    feed_size = None if opts.no_temporal or opts.no_feed else max(opts.sizes)
    target = open_target(opts, cluster)
    say(f"database: {target.description}")
    try:
        for size in opts.sizes:
            shape = Shape(prospects=size, pending=round(size * opts.pending_share), runs=size)
            say(
                f"size {size:,}: {shape.prospects:,} prospects ({shape.pending:,} pending), "
                f"{shape.runs:,} agent runs in the last 24 h"
            )
            url = await target.fresh(f"size{size}")
            engine = create_engine(url, pool_size=10)
            try:
                await upgrade(engine)
                await load(engine, shape, say)
                bench = DbBench(
                    create_sessionmaker(engine),
                    repeat=opts.repeat,
                    baseline_repeat=opts.baseline_repeat,
                    say=say,
                )
                got, agreed = await bench.run(shape.prospects, shape.runs, shape.pending)
                figures += got
                checks += [Check(f"[{size:,}] {c.name}", c.ok, c.detail) for c in agreed]
                if size == feed_size and not feed[0]:
                    feed = await _feed(opts, url, say)
            finally:
                await engine.dispose()
                await target.release(url)
        figures += _memory_growth(figures, opts.sizes)
        if not opts.no_temporal:
            from bench.temporal_bench import run_temporal

            say(f"Temporal: {opts.handoffs} handoffs, {opts.chains} chains")
            url = await target.fresh("temporal")
            engine = create_engine(url, pool_size=20, max_overflow=20)
            state = Path(tempfile.mkdtemp(prefix="orch-bench-state-"))
            try:
                await upgrade(engine)
                got, agreed = await run_temporal(
                    url,
                    create_sessionmaker(engine),
                    state,
                    handoffs=opts.handoffs,
                    chains=opts.chains,
                    say=say,
                    chain_wave=opts.chain_wave,
                    sweep=opts.sweep,
                    allocator=opts.worker_malloc,
                )
                figures += got
                checks += agreed
            finally:
                await engine.dispose()
                await target.release(url)
                shutil.rmtree(state, ignore_errors=True)
        figures += feed[0]
        checks += feed[1]
    finally:
        await target.close()
    document = {
        "generated_at": datetime.now(UTC).isoformat(),
        "database": target.description,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in vars(opts).items()
            if k != "database_url"
        },
        "elapsed_seconds": time.perf_counter() - began,
        "agree": all(c.ok for c in checks),
        "goals": {
            "met": sum(f.met is True for f in figures),
            "missed": sum(f.met is False for f in figures),
        },
        "figures": [f.as_dict() for f in figures],
        "checks": [vars(c) for c in checks],
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(document, indent=2, default=str))
    return document


async def _feed(
    opts: argparse.Namespace, url: str, say: Callable[[str], None]
) -> tuple[list[Figure], list[Check]]:
    """Figures 7 and 8 on this size's database, its loaded table still there."""
    from bench.feed_bench import FeedPlan, run_feed

    plan = FeedPlan(
        handoffs=opts.handoffs,
        commits=opts.feed_commits,
        rate=opts.feed_rate,
        sweep_period=opts.sweep_period,
    )
    engine = create_engine(url, pool_size=20, max_overflow=20)
    state = Path(tempfile.mkdtemp(prefix="orch-bench-feed-"))
    try:
        return await run_feed(url, create_sessionmaker(engine), plan, state, say)
    finally:
        await engine.dispose()
        shutil.rmtree(state, ignore_errors=True)


def _memory_growth(figures: list[Figure], sizes: Sequence[int]) -> list[Figure]:
    """Our report's peak memory at the largest size over the smallest: should stay flat."""
    if len(set(sizes)) < 2:
        return []
    lo, hi = min(sizes), max(sizes)
    peak = {f.key: f.ours for f in figures}
    small, large = peak.get(f"report.memory.{lo}"), peak.get(f"report.memory.{hi}")
    if not small or large is None:
        return []
    growth = large / small
    spec = {f.key: f.other for f in figures}
    spec_small, spec_large = spec.get(f"report.memory.{lo}"), spec.get(f"report.memory.{hi}")
    spec_growth = spec_large / spec_small if spec_small and spec_large else None
    return [
        Figure.make(
            "report.memory.growth",
            f"daily report memory growth, {hi:,} / {lo:,} prospects",
            "x",
            growth,
            spec_growth,
            Goal("≤ 1.5x", max_ours=1.5),
        )
    ]


def print_results(document: dict[str, Any], out: Path) -> None:
    figures = [Figure(**{k: v for k, v in f.items() if k != "ratio"}) for f in document["figures"]]
    print()
    print(table(figures))
    failed = [c for c in document["checks"] if not c["ok"]]
    print()
    print(
        f"agreement with the baseline: {len(document['checks']) - len(failed)} of "
        f"{len(document['checks'])} checks passed"
    )
    for c in failed:
        print(f"  DISAGREE {c['name']}: {c['detail']}")
    goals = document["goals"]
    print(
        f"goals: {goals['met']} met, {goals['missed']} missed; "
        f"{document['elapsed_seconds']:.0f} s; saved {out}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    document = asyncio.run(run_benchmarks(opts, say))
    print_results(document, opts.out)
    return 0 if document["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
