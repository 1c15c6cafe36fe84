"""Configuration: parsed once, in ``main``, into a frozen ``Settings`` value.

Sources, highest precedence first: command-line options (passed as ``overrides``), then
``BIOGW_*`` environment variables (nested fields with ``__``, e.g.
``BIOGW_BLE__LINK=platform``), then an optional TOML file, then the embedded defaults.
Sources are merged field by field and the result is validated as a whole. Components never
read the environment or files themselves; they receive the parts of ``Settings`` they need
as keyword arguments.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from devices.frame import StreamKind
from gateway.errors import ConfigError

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BleSettings(_Section):
    """Bluetooth: which link to use and how patient to be with it."""

    link: Literal["virtual", "platform"] = "virtual"
    """``virtual``: bumble's virtual controllers and link, with simulated garments in this
    process. ``platform``: bleak's backend for this OS (BlueZ on Linux), real hardware."""
    adapter: str | None = None
    """Platform adapter name (e.g. ``hci0``); ``None`` for the system default."""
    keystore_dir: Path | None = None
    """Where the virtual link keeps bonds; ``None`` keeps them in memory."""
    scan_timeout_s: float = Field(default=5.0, gt=0, le=300)
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120)


class SimSettings(_Section):
    """Simulated garments that the virtual link starts next to the gateway."""

    polar: int = Field(default=1, ge=0, le=64)
    garment: int = Field(default=2, ge=0, le=64)
    seed: int = 0
    require_bonding: bool = False
    speed: float = Field(default=1.0, gt=0, le=1000)
    """Signal time per wall-clock second (1.0 = real time)."""
    passkey: int | None = Field(default=None, ge=0, le=999_999)
    """Simulated devices require this passkey when pairing (MITM protection)."""
    replay_ecg: Path | None = None
    """A WFDB record (path without suffix) every simulated device replays as its ECG."""


class DatabaseSettings(_Section):
    """The care database (identity, consent, audit, clinical) and the research database
    (pseudo, release)."""

    care_dsn: str | None = None
    """libpq connection string or URI (``BIOGW_DATABASE__CARE_DSN``). ``None``: use an
    embedded PostgreSQL (pgserver) kept in ``embedded_dir``, migrated on first use."""
    embedded_dir: Path = Path(".biogw/pgdata")
    """Data directory of the embedded server used when ``care_dsn`` is unset, relative to
    the current directory unless absolute (``BIOGW_DATABASE__EMBEDDED_DIR``)."""
    research_dsn: str | None = None
    """The research database (``BIOGW_DATABASE__RESEARCH_DSN``). ``None`` with the
    embedded server: its database ``biogw_research``, migrated on first use. ``None``
    with a configured ``care_dsn``: no research database (the research path cannot be
    ingested)."""


class PrivacySettings(_Section):
    """Where the key store lives and how its master key arrives (never in a database)."""

    keystore_dir: Path = Path(".biogw/keys")
    """The file key store: one 0700 directory of 0600 AES-256-GCM encrypted key files."""
    master_key: SecretStr | None = None
    """The 32-byte master key, hex or base64 (``BIOGW_PRIVACY__MASTER_KEY``)."""
    master_key_file: Path | None = None
    """Or a file holding it (32 raw bytes, or the same text forms)."""


_TOPIC_SEGMENT = r"^[A-Za-z0-9_.-]{1,64}$"


class GatewaySettings(_Section):
    """The edge process (``biogw gateway``): identity, device sessions and queues."""

    id: str = Field(default="gw1", pattern=_TOPIC_SEGMENT)
    """This gateway's name in status topics and its MQTT client id; not a MAC or a name."""
    watchdog_s: float = Field(default=5.0, gt=0, le=600)
    """Reconnect a device whose notifications stop for this long."""
    slots_per_adapter: int = Field(default=7, ge=1, le=64)
    """Connections held at once per adapter; devices beyond it wait for a slot."""
    reconnect_initial_s: float = Field(default=0.25, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    notification_queue: int = Field(default=4096, ge=16, le=1_000_000)
    """Notifications buffered per device between the BLE callback and the decoder."""
    edge_queue: int = Field(default=8192, ge=16, le=1_000_000)
    """Frames buffered between the device sessions and the router/transport."""
    care_team: str = "care-team"
    """The actor the clinical path is for: consent grants limited to another actor don't
    open it."""
    research_actor: str = "research"
    """The actor the research path is for."""


class MqttSettings(_Section):
    """The broker the gateway publishes to (QoS 1, persistent session)."""

    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    """TLS with the system trust store, or ``ca_file`` when given."""
    ca_file: Path | None = None
    cert_file: Path | None = None
    """Client certificate (mutual TLS), with ``key_file``."""
    key_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    topic_prefix: str = Field(default="biogw/v1", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    max_inflight: int = Field(default=512, ge=1, le=65535)
    """Messages published and not yet acknowledged by the broker."""


class SpoolSettings(_Section):
    """The durable on-disk spool every outgoing message passes through."""

    dir: Path = Path(".biogw/spool")
    max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    """Topic + payload bytes held at most; past it the oldest research data goes first
    (docs/spool.md)."""
    sync: Literal["normal", "full"] = "full"
    """``full``: every group commit is fsynced (survives power loss). ``normal``: written
    to the OS only (survives a crash of the gateway process, not of the machine)."""


class MetricsSettings(_Section):
    """The Prometheus metrics endpoint (``GET /metrics``)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)
    """0 picks a free port (printed at start)."""


IngestPathName = Literal["clinical", "research"]


class IngestSettings(_Section):
    """The ingester (``biogw ingest``): MQTT to the two databases."""

    id: str = Field(default="ingest1", pattern=_TOPIC_SEGMENT)
    """Instance name; MQTT client ids are ``biogw-{id}-{path}``. Two ingesters sharing
    the load need different ids and the same ``share_group``."""
    paths: tuple[IngestPathName, ...] = ("clinical", "research")
    share_group: str | None = Field(default="biogw-ingest", pattern=_TOPIC_SEGMENT)
    """MQTT shared subscription group (``$share/{group}/...``): ingesters in one group
    split the messages. ``None`` subscribes plainly (every ingester gets everything; the
    databases still store each frame once)."""
    batch_max_messages: int = Field(default=2000, ge=1, le=65535)
    batch_max_s: float = Field(default=0.25, gt=0, le=1.0)
    """A batch is committed when it holds ``batch_max_messages`` or this long after its
    first message arrived, whichever comes first."""
    receive_maximum: int = Field(default=10000, ge=1, le=65535)
    """Un-acknowledged messages the broker may send (MQTT 5 Receive Maximum): bounds the
    ingester's memory; must be at least ``batch_max_messages`` to fill a batch."""
    session_expiry_s: int = Field(default=7 * 86400, ge=0, le=0xFFFFFFFF)
    """How long the broker keeps the subscription and queues messages for a stopped
    ingester."""
    retry_initial_s: float = Field(default=0.5, gt=0, le=60)
    retry_max_s: float = Field(default=30.0, gt=0, le=3600)
    """Backoff between attempts to reach the broker or a database."""
    partitions_ahead_days: int = Field(default=1, ge=0, le=31)
    vitals: bool = True
    """Compute vitals and alerts from the stored frames (``processing``) and store them.
    The processors need each stream's frames in order: run one vitals-computing ingester
    per path (several ingesters sharing a subscription would each see every stream with
    holes; set ``vitals = false`` on all but one, or give each its own wearers)."""
    publish_alerts: bool = True
    """Publish the clinical path's warning and critical alerts on
    ``{prefix}/alerts/{subject_id}/{kind}`` (the broker user needs write access there)."""


class RetentionSettings(_Section):
    """How long each database keeps each stream, in days (``default`` for the streams not
    named; ``vitals`` for the vitals table). Whole day partitions past the longest period
    are dropped; a shorter period deletes that stream's rows from the younger ones."""

    clinical: dict[str, float] = Field(default_factory=lambda: {"default": 365.0})
    research: dict[str, float] = Field(default_factory=lambda: {"default": 730.0})
    interval_s: float = Field(default=3600.0, gt=0)
    """How often ``biogw ingest --retention`` runs the job in process."""

    @field_validator("clinical", "research")
    @classmethod
    def _known_streams(cls, periods: dict[str, float]) -> dict[str, float]:
        known = {kind.value for kind in StreamKind} | {"default", "vitals"}
        unknown = sorted(set(periods) - known)
        if unknown:
            raise ValueError(f"unknown stream(s) {', '.join(unknown)}")
        if any(not 0 < days < 36_500 for days in periods.values()):
            raise ValueError("periods must be between 0 and 36500 days")
        if "default" not in periods:
            raise ValueError("a 'default' period is required")
        return periods


class Settings(BaseSettings):
    """Everything biogw can be told. Frozen; build it with ``load_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="BIOGW_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    log_level: LogLevel = "INFO"
    ble: BleSettings = BleSettings()
    sim: SimSettings = SimSettings()
    database: DatabaseSettings = DatabaseSettings()
    privacy: PrivacySettings = PrivacySettings()
    gateway: GatewaySettings = GatewaySettings()
    mqtt: MqttSettings = MqttSettings()
    spool: SpoolSettings = SpoolSettings()
    metrics: MetricsSettings = MetricsSettings()
    ingest: IngestSettings = IngestSettings()
    retention: RetentionSettings = RetentionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Overrides (init arguments) first, then the environment, then the TOML data that
        # ``load_settings`` attached to its subclass.
        toml = InitSettingsSource(settings_cls, init_kwargs=dict(cls._toml_data))
        return (init_settings, env_settings, toml)

    _toml_data: ClassVar[Mapping[str, object]] = {}


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(str(path), ("file not found",)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), (f"not valid TOML: {exc}",)) from exc


def _problems(exc: ValidationError) -> tuple[str, ...]:
    return tuple(
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
    )


def load_settings(
    config_file: Path | None = None, *, overrides: Mapping[str, object] | None = None
) -> Settings:
    """Parse the configuration once. ``overrides`` (command-line options, nested like the
    TOML tables) win over everything. Raises ``ConfigError`` listing every invalid field."""
    toml_data = _read_toml(config_file) if config_file is not None else {}

    class _Configured(Settings):
        _toml_data = toml_data

    source = str(config_file) if config_file is not None else "environment"
    try:
        return _Configured(**dict(overrides or {}))  # type: ignore[arg-type]  # validated here
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from exc


class Invocation(Protocol):
    """What a ``biogw`` subcommand gets from the command group: its settings, with the
    subcommand's own options merged in as overrides (``gateway.cli`` implements it)."""

    def settings(self, **sections: dict[str, object]) -> Settings: ...
