"""The housekeeping benchmark runs end to end at a tiny size: every prospect of each sweep is
handed off exactly once and housekeeping removes exactly the rows that were due. No timing is
asserted (CI machines are too noisy)."""

from __future__ import annotations

from pathlib import Path

from bench.housekeeping_bench import HousekeepingPlan, run_housekeeping

TINY = HousekeepingPlan(rows=3000, days=3.0, keep_days=1.0, handoffs=10)


async def test_housekeeping_benchmark_on_sqlite_checks_out(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'housekeeping.db'}"
    figures, checks = await run_housekeeping(url, TINY, tmp_path, lambda _m: None)
    assert [c for c in checks if not c.ok] == []
    assert len(checks) == 5
    assert {f.key for f in figures} == {
        "housekeeping.rows_per_second",
        "housekeeping.sweep_throughput",
    }
    assert all(f.ours is not None and f.ours > 0 for f in figures)
    sweep = next(f for f in figures if f.key == "housekeeping.sweep_throughput")
    assert sweep.other is not None and sweep.other > 0
    assert 2000 <= sweep.detail["rows_due"] < 3000  # two days of three, and the edge
