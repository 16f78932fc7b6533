"""The shape benchmark runs every variant to completion and reports each against the ceiling."""

from __future__ import annotations

import pytest

from bench.shape_bench import VARIANTS, measure, report


async def test_every_shape_completes_and_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    rates = await measure(n=12, rounds=1, batch=5)
    assert set(rates) == {v.name for v in VARIANTS}
    assert all(len(values) == 1 and values[0] > 0 for values in rates.values())
    report(rates)
    lines = capsys.readouterr().out.splitlines()
    assert all(any(line.startswith(v.name) for line in lines) for v in VARIANTS)
    assert any(line.startswith("ceiling") and line.endswith("1.00") for line in lines)
