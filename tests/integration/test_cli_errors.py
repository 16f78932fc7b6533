"""Every command, against a database or a Temporal that is not there or not ready, or an
invalid setting: one ``error:`` line saying what to do, a non-zero exit, no traceback, and
nothing created. Most cases run in-process through typer's CliRunner; a few as real
processes, to prove what reaches stderr and that the process exits (os._exit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from cli.app import app
from db.roles import Roles, is_postgres
from orchestrator.settings import get_settings
from tests.helpers.pg import PgCluster, as_role, free_port

runner = CliRunner()
READS_THE_DATABASE = [["health"], ["report"], ["worker"], ["api"], ["simulate"]]
NEEDS_TEMPORAL = [["run"], ["schedules", "apply"]]
PROCESS_TIMEOUT = 90
KEEP = {"ORCH_WORKER__SANDBOX_ALL", "ORCH_REQUIRE_POSTGRES"}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A clean ORCH_ environment whose state directory does not exist; yields that path.
    Temporal points at a port nobody listens on."""
    for name in [
        n for n in os.environ if n.startswith("ORCH_") and n != "ORCH_WORKER__SANDBOX_ALL"
    ]:
        monkeypatch.delenv(name)
    state = tmp_path / "state"
    monkeypatch.setenv("ORCH_STATE_DIR", str(state))
    monkeypatch.setenv("ORCH_TEMPORAL__ADDRESS", f"127.0.0.1:{free_port()}")
    get_settings.cache_clear()
    yield state
    get_settings.cache_clear()


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("ORCH_DATABASE_URL", url)
    get_settings.cache_clear()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def fails(command: list[str], code: int, *expected: str) -> str:
    """Runs ``command``, which must exit ``code`` with one error line holding ``expected``."""
    exit_code, output = invoke(*command)
    assert exit_code == code, output
    return assert_one_error_line(output, *expected)


def assert_one_error_line(output: str, *expected: str) -> str:
    """The single ``error:`` line (the worker may log a line of its own before it)."""
    assert "Traceback" not in output
    assert "tonic" not in output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", READS_THE_DATABASE, ids=" ".join)
def test_a_missing_sqlite_file_is_reported_and_not_created(env: Path, command: list[str]) -> None:
    fails(command, 1, "no database at", "run orchestrator db upgrade")
    assert not env.exists()


@pytest.mark.parametrize("command", READS_THE_DATABASE, ids=" ".join)
def test_an_unmigrated_sqlite_file_is_reported_and_left_as_it_was(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    use_database(monkeypatch, f"sqlite+aiosqlite:///{empty}")
    fails(command, 1, "is not migrated: run orchestrator db upgrade")
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


@pytest.mark.parametrize("command", [*READS_THE_DATABASE, ["db", "upgrade"], ["db", "grant-roles"]])
def test_an_unreachable_postgres_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    use_database(monkeypatch, f"postgresql+asyncpg://orchestrator:pw@127.0.0.1:{free_port()}/x")
    line = fails(command, 1, "cannot reach the database at", "connection refused")
    assert "pw@" not in line  # the password is never printed
    assert not env.exists()


@pytest.mark.parametrize("command", [["health"], ["db", "upgrade"], ["db", "grant-roles"]])
def test_wrong_postgres_credentials_are_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, pg_cluster: PgCluster, command: list[str]
) -> None:
    url = pg_cluster.url().replace("postgres@", "nobody@")
    use_database(monkeypatch, url)
    fails(command, 1, "refused the login", "ORCH_DATABASE_URL")


def test_a_postgres_database_that_does_not_exist_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, pg_cluster: PgCluster
) -> None:
    use_database(monkeypatch, pg_cluster.url("no_such_database"))
    fails(["health"], 1, "does not exist", "createdb")


def test_a_role_without_the_grants_is_told_to_run_grant_roles(
    env: Path, monkeypatch: pytest.MonkeyPatch, db_url: str, owner_engine: AsyncEngine
) -> None:
    if not is_postgres(db_url):
        pytest.skip("SQLite has no roles")
    use_database(monkeypatch, as_role(db_url, Roles().ingest))  # may not read alembic_version
    fails(["health"], 1, "permission denied", "run orchestrator db grant-roles")


@pytest.mark.parametrize("command", NEEDS_TEMPORAL, ids=" ".join)
def test_no_temporal_is_one_line_and_touches_no_database(env: Path, command: list[str]) -> None:
    fails(command, 1, "cannot reach Temporal at 127.0.0.1:", "ORCH_TEMPORAL__ADDRESS")
    assert not env.exists()


def test_a_worker_with_a_migrated_database_and_no_temporal_is_one_line(env: Path) -> None:
    assert invoke("db", "upgrade")[0] == 0
    fails(["worker"], 1, "cannot reach Temporal at")


@pytest.mark.parametrize("command", [*READS_THE_DATABASE, *NEEDS_TEMPORAL, ["db", "upgrade"]])
def test_invalid_settings_name_each_variable_and_exit_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.setenv("ORCH_TIME_ZONE", "Mars/Olympus_Mons")
    monkeypatch.setenv("ORCH_HANDOFFS__PAGE_SIZE", "0")
    get_settings.cache_clear()
    line = fails(command, 2, "invalid configuration")
    assert "ORCH_TIME_ZONE: unknown time zone 'Mars/Olympus_Mons'" in line
    assert "ORCH_HANDOFFS__PAGE_SIZE: Input should be greater than or equal to 1" in line
    assert not env.exists()


def test_a_setting_that_is_not_json_is_one_line(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_AGENTS", "not json")
    get_settings.cache_clear()
    fails(["health"], 2, "invalid configuration", '"agents"', "JSON")


@pytest.mark.parametrize("how", ["flag", "setting"])
def test_a_developer_can_ask_for_the_traceback(
    env: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "setting":
        monkeypatch.setenv("ORCH_CLI__TRACEBACK", "true")
    result = runner.invoke(app, ["--traceback", "health"] if how == "flag" else ["health"])
    assert result.exit_code == 1
    assert "Traceback" in result.output
    assert "DatabaseMissing" in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("error: no database at")


def test_doctor_with_nothing_running_fails_those_lines_and_creates_nothing(env: Path) -> None:
    code, output = invoke("doctor")
    assert code == 1
    assert "Traceback" not in output
    lines = output.splitlines()
    assert lines[0].startswith("FAIL database") and "no database at" in lines[0]
    assert lines[1].startswith("skip roles")
    assert lines[2].startswith("FAIL temporal") and "cannot reach Temporal" in lines[2]
    assert all(line.startswith("skip") for line in lines[3:])
    assert not env.exists()


def test_doctor_json_says_which_checks_failed(env: Path) -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["ok"] is False
    statuses = {check["name"]: check["status"] for check in body["checks"]}
    assert statuses["database"] == statuses["temporal"] == "FAIL"
    assert statuses["roles"] == statuses["worker"] == "skip"


# --- as real processes: what reaches stderr, and that the process ends -------------------


def spawn(env_overrides: dict[str, str], *args: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    environ.update(env_overrides)
    executable = Path(sys.executable).with_name("orchestrator")
    return subprocess.Popen(
        [str(executable), *args],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_executable_prints_one_line_on_stderr_and_exits(tmp_path: Path) -> None:
    """Three failures side by side (each process pays the imports): a missing database, no
    Temporal (whose SDK threads once held the exit), an invalid setting."""
    state = tmp_path / "state"
    base = {"ORCH_STATE_DIR": str(state), "ORCH_TEMPORAL__ADDRESS": f"127.0.0.1:{free_port()}"}
    cases = {
        "missing": (spawn(base, "health"), 1, "no database at"),
        "temporal": (spawn(base, "run"), 1, "cannot reach Temporal at"),
        "setting": (spawn({**base, "ORCH_TIME_ZONE": "Nowhere"}, "run"), 2, "ORCH_TIME_ZONE"),
    }
    try:
        for name, (process, code, expected) in cases.items():
            check_process(name, process, code, expected)
    finally:
        for process, _, _ in cases.values():
            process.kill()
    assert not state.exists()


def check_process(name: str, process: subprocess.Popen[str], code: int, expected: str) -> None:
    stdout, stderr = process.communicate(timeout=PROCESS_TIMEOUT)
    assert process.returncode == code, (name, stderr)
    assert "Traceback" not in stderr + stdout
    assert "tonic" not in stderr
    assert "Fatal Python error" not in stderr
    error_lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, (name, stderr)
    assert expected in error_lines[0]
