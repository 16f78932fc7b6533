"""The one place configuration is read: environment variables with the ``ORCH_`` prefix.

Nested groups use ``__`` (for example ``ORCH_HEALTH__ERROR_RATE_FAILING=0.4``). Tests build a
``Settings`` directly or override ``get_settings``; nothing else reads the environment.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import time, timedelta
from enum import StrEnum
from functools import lru_cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from pipeline.conflicts import ConflictRules
from pipeline.handoffs import HandoffPolicy, Transport
from pipeline.health import DEFAULT_EXPECTED_RECORDS, HealthThresholds
from pipeline.validation import ValidationRules, dwell_times

DEFAULT_STATE_DIR = Path(".orchestrator")


class TemporalSettings(BaseModel):
    """How to reach Temporal: a local dev server by default, or a remote cluster / Cloud."""

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "orchestrator"
    tls: bool = False
    tls_server_name: str | None = None
    tls_ca_cert_path: Path | None = None
    tls_client_cert_path: Path | None = None
    tls_client_key_path: Path | None = None
    api_key: SecretStr | None = None
    web_ui_url: str = "http://localhost:8233"


class ScheduleSettings(BaseModel):
    """Cron expressions of the Temporal Schedules the worker keeps in place. The report
    schedules follow ``ReportSettings`` so that windows end exactly when reports run."""

    health_check: str = "*/15 * * * *"
    handoffs: str = "*/5 * * * *"
    conflicts: str = "*/30 * * * *"
    validation: str = "7 * * * *"
    enabled: bool = True


class ValidationSettings(BaseModel):
    transition_lookback: timedelta = timedelta(days=7)
    """How far back status_change activities are checked against the state graph."""
    dropped_handoff_grace: timedelta = timedelta(minutes=15)
    """How long a prospect may wait for its handoff to start before it counts as dropped."""
    alert_threshold: int = Field(50, ge=0)
    range_size: int = Field(20_000, ge=1)
    dwell: dict[str, timedelta] = {}
    """Overrides of the default dwell time per state (see pipeline/validation.py)."""

    def rules(self) -> ValidationRules:
        return ValidationRules(
            dwell=dwell_times(self.dwell),
            transition_lookback=self.transition_lookback,
            dropped_handoff_grace=self.dropped_handoff_grace,
            alert_threshold=self.alert_threshold,
            range_size=self.range_size,
        )


class AlertSettings(BaseModel):
    """Where alerts go and how often people are reminded."""

    repeat_after: timedelta = timedelta(hours=4)
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    """Signs the generic webhook's JSON body (HMAC-SHA256, X-Orchestrator-Signature)."""
    slack_webhook_url: SecretStr | None = None
    """A Slack-compatible incoming webhook (its URL is the secret)."""
    watchdog_after: timedelta = timedelta(minutes=30)
    """No monitor cycle completed for this long (twice its interval) is itself an alert."""
    max_attempts: int = Field(50, ge=1)
    """Deliveries tried this many times are given up (marked failed, still visible)."""

    @property
    def sinks(self) -> list[str]:
        return (
            ["log"]
            + ["webhook"] * bool(self.webhook_url)
            + ["slack"] * bool(self.slack_webhook_url)
        )


class HealthSettings(HealthThresholds):
    """The health thresholds (see ``HealthThresholds``) plus how the hourly rollup of
    ``agent_runs`` is kept (db/commands/health_rollup.py)."""

    rollup_settle: timedelta = Field(timedelta(hours=1), ge=timedelta(0))
    """How long after an hour ends before it is rolled up. Runs written late (by an agent
    that writes its row when the run ends) mostly land within it, so few rolled-up hours
    have to be redone; hours not rolled up are read from ``agent_runs``, so a longer settle
    costs time, never accuracy."""


class BreakerSettings(BaseModel):
    enabled: bool = True
    cooldown: timedelta = timedelta(minutes=10)
    """How long a failing agent's circuit stays open before one probe handoff is let through."""


class ConflictSettings(ConflictRules):
    """How long a handoff may wait on another agent's lease before it is reported."""


class ReportSettings(BaseModel):
    at: time = time(8, 0)
    """Local time (in ``time_zone``) reports run and their windows end."""
    weekly_day: int = Field(1, ge=0, le=6)
    """Day of the weekly report, cron numbering: 0 Sunday, 1 Monday, ... 6 Saturday."""

    @property
    def daily_cron(self) -> str:
        return f"{self.at.minute} {self.at.hour} * * *"

    @property
    def weekly_cron(self) -> str:
        return f"{self.at.minute} {self.at.hour} * * {self.weekly_day}"


RETAINED_TABLES = (
    "events",
    "notifications",
    "alerts",
    "violations",
    "audit",
    "handoffs",
    "reports",
)
"""In the order housekeeping prunes them: notifications before the alerts they refer to."""


class RetentionSettings(BaseModel):
    """How long the orchestrator keeps its own rows before housekeeping deletes them
    (db/commands/retention.py); ``0`` keeps a table forever. Open work is never deleted:
    only delivered notifications, resolved alerts and violations, and finished ledger rows
    whose prospect has left that state entry (the ledger is what keeps exactly-once true
    once Temporal has forgotten the workflow)."""

    events: timedelta = Field(timedelta(days=7), ge=timedelta(0))
    notifications: timedelta = Field(timedelta(days=30), ge=timedelta(0))
    """Delivered (``sent``) notifications; pending and given-up ones stay."""
    alerts: timedelta = Field(timedelta(days=90), ge=timedelta(0))
    """Resolved alerts, counted from ``resolved_at``, once no notification refers to them."""
    violations: timedelta = Field(timedelta(days=90), ge=timedelta(0))
    """Resolved state violations, counted from ``resolved_at``."""
    audit: timedelta = Field(timedelta(days=365), ge=timedelta(0))
    handoffs: timedelta = Field(timedelta(days=90), ge=timedelta(0))
    """Finished ledger rows, counted from ``finished_at``."""
    reports: timedelta = Field(timedelta(0), ge=timedelta(0))
    schedule: str = "17 3 * * *"
    """Cron of the daily housekeeping cycle (off-peak, in ``time_zone``)."""
    batch_size: int = Field(1000, ge=1, le=5000)
    """Rows deleted per transaction: each batch is one short transaction."""
    batch_pause: timedelta = Field(timedelta(milliseconds=50), ge=timedelta(0))
    """Pause between batches, so agents and handoffs get the database in between."""
    busy_share: float = Field(0.05, gt=0, le=1)
    """At most this share of its time housekeeping spends deleting: after a batch that
    took ``t`` it pauses ``t * (1 / busy_share - 1)``, so a busy database gets more room.
    The deletes cost more than their own time (WAL, checkpoints, autovacuum), so the share
    that keeps a live sweep within 10% is small (bench/README.md)."""
    batches_per_pass: int = Field(200, ge=1)
    """Batches one housekeeping activity runs before it returns to the workflow, which
    calls it again: no activity runs long, and the history records progress."""

    @field_validator(*RETAINED_TABLES, mode="before")
    @classmethod
    def _plain_seconds(cls, value: Any) -> Any:
        """``ORCH_RETENTION__EVENTS=0`` means forever: a bare number is seconds, as in JSON."""
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    def windows(self) -> dict[str, timedelta]:
        """The tables kept for a limited time, and for how long (``0`` = forever, left out)."""
        return {t: getattr(self, t) for t in RETAINED_TABLES if getattr(self, t)}


class AgentEndpoint(BaseModel):
    """How one agent is reached: a Temporal worker of its own (default) or an HTTP URL."""

    transport: Transport = "temporal"
    url: str | None = None
    secret: SecretStr | None = None
    """Shared secret for HMAC-SHA256 signatures of requests and callbacks."""

    @model_validator(mode="after")
    def _http_needs_url(self) -> AgentEndpoint:
        if self.transport == "http" and not self.url:
            raise ValueError("an http agent needs a url")
        return self


class HandoffSettings(HandoffPolicy):
    """Handoff timeouts (see ``HandoffPolicy``) plus how sweeps page."""

    page_size: int = Field(2000, ge=1, le=5000)
    """Prospects in a trigger state judged per finder page (so at most this many handoffs);
    a page never exceeds ``max_children_per_run``. Fewer, larger pages cost less in all
    (bench/README.md, figure 3)."""
    max_children_per_run: int = Field(1900, ge=1, le=1900)
    """Children started before a sweep continues as new (Temporal allows 2,000 pending)."""
    start_batch: int = Field(100, ge=1, le=1000)
    max_in_flight: int = Field(2000, ge=1)
    """Open handoffs at which a sweep stops starting more: open ledger rows, plus the
    sweep's own handoffs started and not begun yet. A handoff sweep waits for room, a full
    cycle leaves the rest for the next sweep. Without it a backlog is started all at once
    and queues at the agents past ``stall_after``; keep it below
    ``worker.max_cached_workflows`` so every open handoff stays in the cache. A handoff
    started elsewhere (an operator's retry) counts once begun, so those can pass it."""
    saturated_wait: timedelta = Field(timedelta(seconds=5), gt=timedelta(0))
    """How long a handoff sweep waits before looking for room again."""

    def policy(self, endpoints: dict[str, AgentEndpoint]) -> HandoffPolicy:
        fields = set(HandoffPolicy.model_fields) - {"transports"}
        transports = {name: e.transport for name, e in endpoints.items()}
        return HandoffPolicy(**self.model_dump(include=fields), transports=transports)


class FeedSettings(BaseModel):
    """The change feed: the long-running workflow that hands a prospect off as soon as it
    enters a trigger state, with the handoffs sweep behind it as reconciliation."""

    enabled: bool = True
    """Workers start the feed and keep it running; off, only the sweep finds new work."""
    poll_interval: timedelta = Field(timedelta(milliseconds=250), gt=timedelta(0))
    """How often the feed's activity reads ``prospects`` for new state entries."""
    overlap: timedelta = Field(timedelta(seconds=30), ge=timedelta(0))
    """How far behind its cursor each poll reads again: state-entry times are the agents'
    clocks and their transactions commit out of order; a later entry is found by the sweep."""
    quiet_return: timedelta = Field(timedelta(minutes=1), gt=timedelta(0), le=timedelta(minutes=5))
    """A poll that finds nothing returns after this long, so an idle feed costs the Temporal
    server a few events a minute, not a few per poll (at most 5 minutes: the poll's
    activity has a 10-minute timeout)."""
    deferred_recheck: timedelta = Field(timedelta(seconds=10), gt=timedelta(0))
    """How often the feed looks again at entries it deferred (paused agent, open circuit)."""
    chain_cooldown: timedelta = Field(timedelta(minutes=5), ge=timedelta(0))
    """A prospect handed off ``max_chain`` times within this long is left to the sweep, as a
    chain that reached its limit is: a loop between agents is slowed, not run flat out."""
    keepalive: timedelta = Field(timedelta(seconds=30), gt=timedelta(0))
    """How often each worker makes sure the feed is running (one call to Temporal)."""


class PresenceSettings(BaseModel):
    """Whether agents are there (orchestrator/task_queues.py, pipeline/presence.py)."""

    cache_seconds: float = Field(5.0, ge=0, le=300)
    """How long one DescribeTaskQueue answer is reused per process: the begin step of
    every handoff and the API read presence from this cache."""
    poller_fresh: timedelta = Field(timedelta(seconds=75), gt=timedelta(0))
    """A poll of the agent's queue at most this old means a worker serves it (an idle
    worker polls again about once a minute)."""
    http_answer_max_age: timedelta = Field(timedelta(minutes=15), gt=timedelta(0))
    """An HTTP agent whose endpoint answered within this long is shown present."""


class WorkerSettings(BaseModel):
    """Capacity of one worker process."""

    max_cached_workflows: int = Field(2500, ge=0)
    """Open workflows kept in memory. Above it the least recently used is evicted and replays
    its whole history at its next task: a sweep's cycle (one event per child) must not be
    evicted by its own 1,900 children, so keep this above ``max_children_per_run``."""
    max_concurrent_activities: int = Field(100, ge=1)
    max_concurrent_local_activities: int = Field(200, ge=1)
    """The handoffs' database steps. Their sessions come from the engine's pool
    (SQLAlchemy's default: 5 connections, 10 more at peaks), which bounds them in practice."""

    malloc_arenas: int = Field(2, ge=0)
    """The most glibc ``malloc`` arenas a worker process uses (0: glibc's default, eight per
    core); more arenas keep more freed memory resident (``MALLOC_ARENA_MAX``, if set, wins)."""
    memory_trim_interval: timedelta = Field(timedelta(minutes=1), ge=timedelta(0))
    """How often the worker hands whole free pages glibc keeps back to the system
    (``malloc_trim``; free memory fragmented among live chunks stays). 0 = never."""
    graceful_shutdown: timedelta = Field(timedelta(seconds=30), ge=timedelta(0))
    """On SIGTERM the worker stops polling and gives the activities it runs this long to
    finish before they are cancelled (and retried elsewhere); keep a container's stop grace
    period above it."""
    sandbox_all: bool = False
    """Run the handoff workflow in the SDK's determinism sandbox too (the cycle always runs
    in it). The handoff is the hot path, one instance per handoff, and the sandbox re-imports
    its module for each one; the test suite turns this on, so a non-deterministic call in
    the handoff still fails there before it ships."""


def _package_version() -> str:
    try:
        return package_version("pipeline-orchestrator")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


class DeploymentSettings(BaseModel):
    """Worker Versioning: workers register as one version of a Temporal Worker Deployment,
    so a deploy that changes a workflow does not replay open runs on the new code (the
    handoff stays on the version it started on; the cycle and the feed move to the current
    one). Off, workers are unversioned (``orchestrator dev``, tests)."""

    versioning: bool = False
    name: str = Field("orchestrator", min_length=1, pattern=r"^[^.]+$")
    """The Worker Deployment's name (no ``.``: Temporal joins name and build id with one)."""
    build_id: str = Field(default_factory=_package_version, min_length=1)
    """This worker's version within the deployment; defaults to the package version."""
    set_current_if_none: bool = True
    """A worker makes its own version current when the deployment has none yet (a first
    deploy); a later version becomes current only by an operator's command."""


class TracingSettings(BaseModel):
    """OpenTelemetry tracing: off unless an OTLP endpoint is given."""

    otlp_endpoint: str | None = None
    """OTLP/HTTP traces endpoint, e.g. ``http://collector:4318/v1/traces``; unset = no tracing."""
    service_name: str = "pipeline-orchestrator"


class ObservabilitySettings(BaseModel):
    """Logs and the Temporal SDK's own metrics."""

    log_format: Literal["auto", "json", "text"] = "auto"
    """``auto``: text on a terminal, JSON lines otherwise."""
    sdk_metrics_address: str | None = "127.0.0.1:0"
    """Where this process's Temporal SDK serves its Prometheus metrics (host:port; port 0
    picks a free one); /metrics includes them when the worker runs in the API's process.
    Unset to turn SDK metrics off."""


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


class ApiKey(BaseModel):
    """One API key, by its SHA-256 hash (``orchestrator keys create`` makes both)."""

    name: str = Field(min_length=1, max_length=64)
    role: Role
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def __repr__(self) -> str:
        return f"ApiKey(name={self.name!r}, role={self.role.value!r})"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORCH_",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # errors would echo secrets from the environment
    )

    state_dir: Path = DEFAULT_STATE_DIR
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; defaults to a SQLite file under state_dir.",
    )
    temporal: TemporalSettings = TemporalSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    time_zone: str = "UTC"
    agents: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_EXPECTED_RECORDS),
        description="Agent name -> expected records per run, in pipeline order.",
    )
    health: HealthSettings = HealthSettings()
    handoffs: HandoffSettings = HandoffSettings()
    feed: FeedSettings = FeedSettings()
    reports: ReportSettings = ReportSettings()
    validation: ValidationSettings = ValidationSettings()
    conflicts: ConflictSettings = ConflictSettings()
    alerts: AlertSettings = AlertSettings()
    breaker: BreakerSettings = BreakerSettings()
    retention: RetentionSettings = RetentionSettings()
    presence: PresenceSettings = PresenceSettings()
    agent_endpoints: dict[str, AgentEndpoint] = {}
    api_keys: list[ApiKey] = []
    """JSON list of {name, role, sha256}; the keys themselves are never stored."""
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_public_url: str = "http://127.0.0.1:8000"
    """Where agents reach the API (HTTP agents' completion callbacks), and the base of the
    dashboard links notifications carry."""
    log_level: str = "INFO"
    worker: WorkerSettings = WorkerSettings()
    deployment: DeploymentSettings = DeploymentSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    tracing: TracingSettings = TracingSettings()
    ingest_database_url: str | None = None
    """Connection used by the agent-run ingestion endpoint, which writes ``agent_runs`` on the
    agents' behalf; with least privilege on PostgreSQL it is the ``orchestrator_ingest`` role.
    Defaults to ``database_url``."""

    @field_validator("time_zone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name") from exc
        return value

    @field_validator("agents")
    @classmethod
    def _positive_expectations(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("at least one agent must be configured")
        bad = {name: n for name, n in value.items() if n <= 0}
        if bad:
            raise ValueError(f"expected records per run must be positive: {bad}")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Database URLs carry passwords: shown without them."""
        for name, value in super().__repr_args__():
            if name in ("database_url", "ingest_database_url") and value:
                value = redact_url(value)
            yield name, value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'orchestrator.db').resolve()}"


class CliSettings(BaseSettings):
    """How the command line reports a failure. Read apart from ``Settings`` so it still
    applies when those are invalid (that is one of the failures it reports)."""

    model_config = SettingsConfigDict(env_prefix="ORCH_CLI__", extra="ignore")

    traceback: bool = False
    """Print the full traceback under the one-line message (for developers)."""


def redact_url(url: str) -> str:
    """``url`` with its password masked, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


@lru_cache
def get_settings() -> Settings:
    return Settings()
