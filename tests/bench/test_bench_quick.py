"""The benchmark runs, end to end, at tiny sizes: ours and the spec's baseline agree and every
figure is in the JSON. No timing is asserted (CI machines are too noisy for that)."""

from __future__ import annotations

import ctypes.util
import json
from pathlib import Path

import pytest

from bench.run import parse_args, run_benchmarks

TINY = ["--sizes", "300,600", "--pending-share", "0.2", "--repeat", "1", "--baseline-repeat", "1"]


def expected_keys(sizes: list[int], pending_share: float, temporal: bool) -> set[str]:
    keys = {"report.memory.growth"}
    for n in sizes:
        keys |= {f"health.time.{n}", f"health.memory.{n}", f"report.time.{n}"}
        keys |= {f"report.memory.{n}", f"pending.time.{round(n * pending_share)}"}
        keys |= {f"rollup.build.{n}", f"rollup.refresh.{n}"}
    if temporal:
        keys |= {"handoff.throughput", "handoff.latency.p50", "handoff.latency.p99"}
        keys |= {"worker.memory", "worker.objects", "worker.memory.burst"}
        keys |= {f"feed.latency.{c}.p{p}" for c in ("idle", "load") for p in (50, 99)}
        keys |= {"feed.throughput"}
    return keys


def assert_complete(document: dict, out: Path, temporal: bool) -> None:
    failed = [c for c in document["checks"] if not c["ok"]]
    assert failed == [] and document["agree"]
    saved = json.loads(out.read_text())
    figures = {f["key"]: f for f in saved["figures"]}
    assert set(figures) == expected_keys([300, 600], 0.2, temporal)
    for key, f in figures.items():
        if key == "worker.memory.burst" and f["ours"] is None:
            # a sweep this small drains its burst too late for a tenth after it: none to show
            assert f["other"] > 0, key
            continue
        assert f["ours"] is not None and f["ours"] > 0, key
        if key.startswith(("health.", "report.", "pending.")):
            assert f["other"] is not None and f["ratio"] is not None, key
    names = " ".join(c["name"] for c in saved["checks"])
    wanted = ["health hygiene", "health through the rollup", "report by status", "pending handoffs"]
    wanted += ["throughput", "latency", "memory sweep", "feed"] if temporal else []
    assert all(part in names for part in wanted), names


async def test_quick_benchmark_on_sqlite_agrees_and_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    # the image's allocator where it is installed (CI installs it), else glibc's
    malloc = "image" if ctypes.util.find_library("jemalloc") else "glibc"
    temporal = ["--handoffs", "20", "--chains", "5", "--sweep", "30", "--worker-malloc", malloc]
    temporal += ["--feed-commits", "5", "--sweep-period", "2"]
    opts = parse_args([*TINY, "--backend", "sqlite", *temporal, "--out", str(out)])
    document = await run_benchmarks(opts, say=lambda _msg: None)
    assert_complete(document, out, temporal=True)


@pytest.mark.postgres
async def test_quick_benchmark_on_postgres_agrees(tmp_path: Path, pg_cluster) -> None:
    out = tmp_path / "latest.json"
    opts = parse_args([*TINY, "--no-temporal", "--out", str(out)])
    opts.database_url = None
    document = await run_benchmarks(opts, say=lambda _msg: None, cluster=pg_cluster)
    assert_complete(document, out, temporal=False)
