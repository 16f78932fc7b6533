"""Configuration comes from ORCH_ environment variables, validated with clear messages."""

from __future__ import annotations

from datetime import timedelta
from importlib.metadata import version as package_version
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.settings import Settings
from orchestrator.temporal_client import tls_config


def test_defaults_are_the_embedded_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCH_DATABASE_URL", raising=False)
    settings = Settings()
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")
    assert settings.resolved_database_url.endswith(".orchestrator/orchestrator.db")
    assert settings.temporal.address == "localhost:7233"
    assert list(settings.agents) == ["prospector", "hygiene", "researcher", "outreach"]


def test_nested_variables_override_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_TEMPORAL__ADDRESS", "temporal.example:7233")
    monkeypatch.setenv("ORCH_TEMPORAL__API_KEY", "secret-key")
    monkeypatch.setenv("ORCH_HEALTH__ERROR_RATE_FAILING", "0.4")
    monkeypatch.setenv("ORCH_HEALTH__SUCCESS_AGE_DEGRADED", "PT3H")
    monkeypatch.setenv("ORCH_AGENTS", '{"hygiene": 50, "outreach": 5}')
    monkeypatch.setenv("ORCH_SCHEDULES__HEALTH_CHECK", "*/5 * * * *")
    settings = Settings()
    assert settings.temporal.address == "temporal.example:7233"
    assert settings.health.error_rate_failing == 0.4
    assert settings.health.success_age_degraded == timedelta(hours=3)
    assert settings.agents == {"hygiene": 50, "outreach": 5}
    assert settings.schedules.health_check == "*/5 * * * *"
    assert "secret-key" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ORCH_TIME_ZONE", "Mars/Olympus", "unknown time zone"),
        ("ORCH_AGENTS", '{"hygiene": 0}', "must be positive"),
        ("ORCH_AGENTS", "{}", "at least one agent"),
        ("ORCH_HEALTH__ERROR_RATE_DEGRADED", "0.5", "must not exceed"),
    ],
)
def test_bad_values_are_refused_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_tls_options_follow_the_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"CA")
    assert tls_config(Settings().temporal) is False
    assert tls_config(Settings(temporal={"tls": True}).temporal) is True
    custom = tls_config(
        Settings(temporal={"tls_ca_cert_path": ca, "tls_server_name": "x"}).temporal
    )
    assert not isinstance(custom, bool)
    assert custom.server_root_ca_cert == b"CA" and custom.domain == "x"


def test_retention_windows_default_to_production_and_zero_keeps_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().retention.windows() == {
        "events": timedelta(days=7),
        "notifications": timedelta(days=30),
        "alerts": timedelta(days=90),
        "violations": timedelta(days=90),
        "audit": timedelta(days=365),
        "handoffs": timedelta(days=90),
    }
    monkeypatch.setenv("ORCH_RETENTION__EVENTS", "0")
    monkeypatch.setenv("ORCH_RETENTION__REPORTS", "P400D")
    windows = Settings().retention.windows()
    assert "events" not in windows and windows["reports"] == timedelta(days=400)
    monkeypatch.setenv("ORCH_RETENTION__BATCH_SIZE", "0")
    with pytest.raises(ValidationError, match="batch_size"):
        Settings()


def test_worker_versioning_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.deployment.versioning is False  # unversioned unless asked
    assert settings.deployment.build_id == package_version("pipeline-orchestrator")
    assert settings.worker.graceful_shutdown == timedelta(seconds=30)
    monkeypatch.setenv("ORCH_DEPLOYMENT__VERSIONING", "true")
    monkeypatch.setenv("ORCH_DEPLOYMENT__BUILD_ID", "2026-12-06.1")
    monkeypatch.setenv("ORCH_WORKER__GRACEFUL_SHUTDOWN", "PT45S")
    settings = Settings()
    assert (settings.deployment.versioning, settings.deployment.build_id) == (True, "2026-12-06.1")
    assert settings.worker.graceful_shutdown == timedelta(seconds=45)
    monkeypatch.setenv("ORCH_DEPLOYMENT__NAME", "orchestrator.prod")
    with pytest.raises(ValidationError, match=r"deployment\.name"):
        Settings()
