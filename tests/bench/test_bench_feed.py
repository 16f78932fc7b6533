"""The change feed's benchmark (figures 7 and 8) runs end to end at tiny sizes on a loaded
table: every prospect is handed off exactly once by the path being measured, and every figure
comes with the baseline of the same run. No timing is asserted (CI machines are too noisy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.feed_bench import FeedPlan, run_feed
from bench.feed_sweep import expected_latency, next_fire
from bench.generate import Shape, load
from bench.run import parse_args
from db.engine import create_engine, create_sessionmaker
from db.migrate import upgrade

FEED_KEYS = {
    f"feed.latency.{condition}.p{p}" for condition in ("idle", "load") for p in (50, 99)
} | {"feed.throughput"}
TINY = FeedPlan(handoffs=20, commits=6, rate=4.0, sweep_period=2.0)
CHECKS = [
    "feed throughput: each once",
    "feed latency idle: each once",
    "feed latency under load: each once",
    "feed load: each once",
    "feed: the reconciling sweep found nothing left",
    "feed: sweep path, each once",
]


async def run_tiny(url: str, tmp_path: Path) -> tuple[list, list]:
    engine = create_engine(url, pool_size=20, max_overflow=20)
    try:
        await upgrade(engine)
        await load(engine, Shape(prospects=300, pending=60, runs=50))
        return await run_feed(url, create_sessionmaker(engine), TINY, tmp_path, lambda _m: None)
    finally:
        await engine.dispose()


def assert_complete(figures: list, checks: list) -> None:
    assert [c for c in checks if not c.ok] == []
    assert [c.name for c in checks] == CHECKS
    assert {f.key for f in figures} == FEED_KEYS
    for f in figures:
        assert f.ours is not None and f.ours > 0, f.key
        assert f.other is not None and f.other > 0, f.key
        assert f.detail["prospects_in_table"] == 300, f.key  # the loaded table, still there
    latency = next(f for f in figures if f.key == "feed.latency.idle.p50")
    assert len(latency.detail["samples"]) == TINY.commits
    assert len(latency.detail["sweep_path"]["samples"]) == TINY.commits


async def test_feed_benchmark_on_sqlite_hands_each_prospect_off_once(tmp_path: Path) -> None:
    figures, checks = await run_tiny(f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}", tmp_path)
    assert_complete(figures, checks)


@pytest.mark.postgres
async def test_feed_benchmark_on_postgres_hands_each_prospect_off_once(
    tmp_path: Path, pg_cluster
) -> None:
    name = await pg_cluster.create_database()
    try:
        figures, checks = await run_tiny(pg_cluster.url(name), tmp_path)
    finally:
        await pg_cluster.drop_database(name)
    assert_complete(figures, checks)


def test_sweep_path_at_five_minutes_is_half_a_period_plus_the_overhead() -> None:
    assert expected_latency([0.5], 300.0, 50) == pytest.approx(150.5, abs=1.6)
    # a third of them wait 20 s more: 1% of all is past 311 s (300 - 9 + 20)
    assert expected_latency([0.5, 0.5, 20.0], 300.0, 99) == pytest.approx(311, abs=3)


def test_interval_schedules_fire_on_multiples_of_the_period() -> None:
    assert next_fire(61.0, 30.0) == 90.0
    assert next_fire(60.0, 30.0) == 60.0


def test_each_preset_sizes_the_feed_figures_and_no_feed_skips_them() -> None:
    quick = parse_args(["--quick"])
    assert (quick.feed_commits, quick.sweep_period, quick.feed_rate) == (40, 10.0, 4.0)
    full = parse_args(["--full", "--sweep-period", "60"])
    assert (full.feed_commits, full.sweep_period) == (300, 60.0)
    assert parse_args(["--no-feed"]).no_feed
