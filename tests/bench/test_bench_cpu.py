"""The benchmark's CPU meters: which part of a sweep spent the time, per handoff."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpu_meter import cpu_seconds, meters, per_handoff, pids_with


def test_per_handoff_divides_each_stretch_by_the_handoffs_it_moved() -> None:
    readings = [
        (0, {"worker": 0.0, "temporal": 0.0}),
        (4, {"worker": 0.5, "temporal": 0.1}),
        (10, {"worker": 1.0, "temporal": 0.5}),
        (30, {"worker": 3.0, "temporal": 0.5}),
        (34, {"worker": 9.0, "temporal": 9.0}),
    ]
    rows = per_handoff(readings, every=10)
    assert rows == [
        {"through": 10, "worker": 100.0, "temporal": 50.0},
        {"through": 30, "worker": 100.0, "temporal": 0.0},
    ]  # the last 4 handoffs are less than half a stretch: not reported


def test_the_last_half_stretch_counts_and_time_at_rest_after_it_does_not() -> None:
    readings = [
        (0, {"worker": 0.0}),
        (10, {"worker": 1.0}),
        (16, {"worker": 1.6}),
        (16, {"worker": 50.0}),  # sampled at rest once every handoff was done
    ]
    assert per_handoff(readings, every=10) == [
        {"through": 10, "worker": 100.0},
        {"through": 16, "worker": 100.0},
    ]
    assert per_handoff([], every=10) == []


def test_a_busy_child_is_found_by_its_command_line_and_its_cpu_counted() -> None:
    marker = f"cpu-meter-{os.getpid()}-{time.monotonic_ns()}"
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 2: pass\n"
    child = subprocess.Popen([sys.executable, "-c", spin + f"#{marker}"])
    try:
        # until the child has exec'd, /proc shows the parent's command line
        deadline = time.monotonic() + 30
        while not pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids_with(marker) == [child.pid]
        parts = meters(os.getpid(), marker)
        assert set(parts) >= {"worker", "bench", "postgres", "temporal"}
        deadline = time.monotonic() + 30
        while parts["temporal"]() < 0.2:
            assert time.monotonic() < deadline, "the child's CPU time never showed"
            time.sleep(0.05)
    finally:
        child.kill()


def test_a_process_that_is_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    assert cpu_seconds(child.pid) == 0.0


def test_reaped_children_count_toward_their_parent() -> None:
    before = cpu_seconds(os.getpid(), reaped=True)
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=30)
    assert cpu_seconds(os.getpid(), reaped=True) - before >= 0.25
