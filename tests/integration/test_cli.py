"""The ``orchestrator`` command through typer's CliRunner, on real databases.

The CLI runs its work with ``asyncio.run``, which refuses to start inside a running event
loop, so these tests are plain synchronous functions; rows are written with ``asyncio.run``
too, on an engine of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cli.app import app
from db.engine import create_engine, create_sessionmaker
from db.migrate import current_revision
from db.models import AgentRun
from orchestrator.settings import get_settings
from tests.helpers.factories import add, mixed_history, run

AGENTS = ["prospector", "hygiene", "researcher", "outreach"]
KNOWN_MODES = "known modes: monitor, handoffs, resolve, validate, report, full"

runner = CliRunner()


@pytest.fixture
def migrated(cli_env: str) -> str:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    return cli_env


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return re.sub(r"\s+", " ", text)


def insert(db_url: str, *rows: AgentRun) -> None:
    async def work() -> None:
        engine = create_engine(db_url)
        try:
            await add(create_sessionmaker(engine), *rows)
        finally:
            await engine.dispose()

    asyncio.run(work())


def revision_of(db_url: str) -> str | None:
    async def work() -> str | None:
        engine = create_engine(db_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    return asyncio.run(work())


def health_json() -> dict:
    result = invoke("health", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- db upgrade ---------------------------------------------------------------------------


def test_db_upgrade_migrates_and_prints_the_revision(cli_env: str) -> None:
    assert revision_of(cli_env) is None
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    revision = revision_of(cli_env)
    assert revision is not None
    assert f"database at revision {revision}" in result.stdout


def test_db_upgrade_twice_is_fine(migrated: str) -> None:
    before = revision_of(migrated)
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert f"database at revision {before}" in result.stdout
    assert revision_of(migrated) == before


# --- health -------------------------------------------------------------------------------


def test_health_json_on_an_empty_database_is_unknown(migrated: str) -> None:
    body = health_json()
    assert body["status"] == "unknown"
    assert [a["agent_name"] for a in body["agents"]] == AGENTS
    assert {a["status"] for a in body["agents"]} == {"unknown"}
    assert all(a["runs_last_24h"] == 0 for a in body["agents"])


def test_health_json_follows_the_run_history(migrated: str) -> None:
    insert(migrated, *mixed_history(datetime.now(UTC)))

    body = health_json()
    agents = {a["agent_name"]: a for a in body["agents"]}
    assert {name: a["status"] for name, a in agents.items()} == {
        "prospector": "failing",
        "hygiene": "healthy",
        "researcher": "failing",
        "outreach": "degraded",
    }
    assert body["status"] == "failing"
    assert agents["researcher"]["errors_last_24h"] == 5
    assert agents["outreach"]["avg_records_per_run"] == pytest.approx(4)
    assert agents["hygiene"]["runs_last_24h"] == 10


def test_health_table_shows_every_agent(migrated: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich reads the width from here when not a terminal
    now = datetime.now(UTC)
    insert(
        migrated, *(run("researcher", "failed", ago=timedelta(hours=h), now=now) for h in (1, 2))
    )
    result = invoke("health")
    assert result.exit_code == 0, result.output
    assert "Agent health" in result.stdout
    lines = {name: line for line in result.stdout.splitlines() for name in AGENTS if name in line}
    assert set(lines) == set(AGENTS)
    assert "failing" in lines["researcher"]
    assert "error rate 100%" in lines["researcher"]
    assert "unknown" in lines["hygiene"]
    assert "overall: failing" in result.stdout


def test_health_table_keeps_agent_names_whole_at_80_columns(
    migrated: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("health")
    assert result.exit_code == 0, result.output
    for name in AGENTS:
        assert name in result.stdout


# --- run ----------------------------------------------------------------------------------


def test_run_with_an_unknown_mode_exits_2_naming_the_known_modes(cli_env: str) -> None:
    result = invoke("run", "--mode", "bogus")
    assert result.exit_code == 2
    assert "unknown mode 'bogus'" in flat(result.output)
    assert KNOWN_MODES in flat(result.output)


@pytest.mark.parametrize("case", ["mode", "time_zone"])
def test_input_that_looks_like_markup_still_gets_the_clean_error(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "mode":
        result = invoke("run", "--mode", "[/x]")
        expected = KNOWN_MODES
    else:
        monkeypatch.setenv("ORCH_TIME_ZONE", "[/x]")
        get_settings.cache_clear()
        result = invoke("health")
        expected = "invalid configuration"
    assert result.exit_code == 2, repr(result.exception)
    assert expected in flat(result.output)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["health"], ["db", "upgrade"]])
def test_an_invalid_time_zone_exits_2(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("ORCH_TIME_ZONE", "Mars/Olympus_Mons")
    get_settings.cache_clear()
    result = invoke(*command)
    assert result.exit_code == 2
    assert "invalid configuration" in result.output
    assert "unknown time zone" in flat(result.output)
    # nothing was done with the database
    assert revision_of(cli_env) is None
