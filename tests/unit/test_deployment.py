"""The production shape in docker-compose.yml is well-formed and consistent with the app."""

from __future__ import annotations

from pathlib import Path

import yaml

from orchestrator.settings import Settings

ROOT = Path(__file__).parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_services_of_the_design() -> None:
    services = compose()["services"]
    assert {"postgres", "temporal", "temporal-ui", "migrate", "worker", "api"} <= set(services)


def test_workers_can_be_scaled() -> None:
    worker = compose()["services"]["worker"]
    # a fixed name or a published port would make `--scale worker=3` fail
    assert "container_name" not in worker and "ports" not in worker
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_environment_is_understood_by_the_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    env = compose()["services"]["worker"]["environment"]
    for key, value in env.items():
        if "${" not in str(value):  # interpolated by compose from the operator's environment
            monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.resolved_database_url.startswith("postgresql+asyncpg://")
    assert settings.temporal.address == "temporal:7233"
    assert settings.api_host == "0.0.0.0"
    assert "ORCH_API_KEYS" in env  # the API refuses every request without keys


def test_services_run_as_the_least_privilege_role_the_migration_creates() -> None:
    services = compose()["services"]
    migrate = services["migrate"]
    assert "grant-roles" in " ".join(migrate["command"])
    assert "//postgres:" in migrate["environment"]["ORCH_DATABASE_URL"]
    for name in ("worker", "api"):
        env = services[name]["environment"]
        assert env["ORCH_DATABASE_URL"].startswith("postgresql+asyncpg://orchestrator:")
        assert env["ORCH_INGEST_DATABASE_URL"].startswith(
            "postgresql+asyncpg://orchestrator_ingest:"
        )


def test_workers_drain_before_compose_kills_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    worker = compose()["services"]["worker"]
    for key, value in worker["environment"].items():
        if "${" not in str(value):
            monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.deployment.versioning is True
    grace = float(worker["stop_grace_period"].removesuffix("s"))
    assert grace > settings.worker.graceful_shutdown.total_seconds()
