"""Settings from `IONFLUX_*` environment variables and an optional `ionflux.toml`.

The core's settings are the file's top-level keys (`IONFLUX_<NAME>`); each service's settings class
(`ServiceSettings`) reads `IONFLUX_<SECTION>_<NAME>` and the file's `[<section>]` table, the section
being its prefix: `IONFLUX_SMTP_HOST` or `[smtp] host = …`. The environment wins over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming it and what is expected."""


def config_file() -> Path:
    """The TOML file read for settings (`IONFLUX_CONFIG_FILE`, default `./ionflux.toml`; may not exist)."""
    return Path(os.environ.get("IONFLUX_CONFIG_FILE", "ionflux.toml"))


class _FileBackedSettings(BaseSettings):
    """Environment variables over a table of the config file (the top level unless `toml_table` says)."""

    @classmethod
    def toml_table(cls) -> tuple[str, ...]:
        return ()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        try:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file(), toml_table_header=cls.toml_table())
        except KeyError:  # the file has no such table
            return (init_settings, env_settings)
        return (init_settings, env_settings, toml)


class Settings(_FileBackedSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_", extra="ignore")

    data_dir: Path = Field(default=Path(".ionflux"), description="Directory for the SQLite file and key file")
    database_url: str = Field(default="", description="SQLAlchemy async URL; default: SQLite in data_dir")
    bus_url: str = Field(default="embedded://", description="embedded:// or amqp://user:pass@host:port/")
    master_key_source: Literal["file", "env", "aws-kms"] = "file"
    master_key: SecretStr | None = Field(default=None, description="base64 32-byte key when source=env")
    master_key_file: Path | None = Field(default=None, description="default: <data_dir>/master.key")
    kms_key_id: str | None = None
    admin_token: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    log_level: str = "INFO"
    otel: bool = Field(default=False, description="let FastAPI's native OpenTelemetry instrument requests "
                                                 "(with the tracer/meter providers your process configures)")
    db_pool_size: int = Field(default=10, gt=0)
    outbox_max_attempts: int = Field(default=0, ge=0, description="0 = retry publishing forever")
    bus_max_deliveries: int = Field(default=5, gt=0, description="deliveries before dead-lettering")
    relay_poll_seconds: float = Field(default=1.0, gt=0)
    relay_batch_size: int = Field(
        default=50, gt=0, description="outbox rows the relay publishes per batch (each batch is one stretch of work "
                                      "on the event loop: larger batches cost the requests sharing it latency)")
    bus_consumer_batch: int = Field(
        default=0, ge=0, description="events the in-process (embedded) consumers take per transaction "
                                     "(0: 50 on SQLite, where each transaction costs thread hand-offs, 16 on "
                                     "PostgreSQL, where a shorter stretch of work on the loop is a better tail)")
    processed_retention_days: int = Field(default=14, gt=0)
    token_cache_seconds: float = Field(
        default=5.0, ge=0, description="how long a verified API token is trusted without a lookup (0: never)")
    credential_cache_seconds: float = Field(
        default=5.0, ge=0, description="how long encrypted credential rows are kept in memory (0: never)")
    webhook_max_body_bytes: int = Field(default=1024 * 1024, gt=0, description="largest webhook body accepted")
    webhook_retention_days: int = Field(default=8, gt=0, description="inbox rows (and dedupe keys) kept this long")
    webhook_publish_delay_seconds: float = Field(
        default=0.05, ge=0, description="how long the relay's wake-up after an inbox commit is held to gather "
                                        "more events per batch (publish latency against background overhead)")
    worker_nice: int = Field(
        default=19, ge=0, le=19, description="how much lower the CPU priority of the worker process `ionflux serve` "
                                             "starts is: when both want a CPU, requests come first and publishing "
                                             "catches up after (0: equal)")
    worker_sqlite_batch: int = Field(
        default=10, gt=0, description="events per relay batch and per consumer transaction in an `ionflux worker` on "
                                      "SQLite: its write transactions hold the database's one write lock, which the "
                                      "server's webhook ingestion waits for, so they are kept short")
    webhook_inbox_writers: int = Field(
        default=1, gt=0, description="webhook inbox batches committed at once (PostgreSQL; SQLite has one writer)")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("expected sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db")
        return value

    @field_validator("bus_url")
    @classmethod
    def _bus_scheme(cls, value: str) -> str:
        if not value.startswith(("embedded://", "amqp://", "amqps://")):
            raise ValueError("expected embedded:// or amqp://user:password@host:port/vhost")
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'ionflux.db').resolve()}"

    @property
    def effective_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def bus_is_embedded(self) -> bool:
        return self.bus_url.startswith("embedded://")

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets masked (for `ionflux config show`)."""
        out = _masked(self)
        out["database_url"] = _mask_url(self.effective_database_url)
        out["bus_url"] = _mask_url(self.bus_url)
        return out


class ServiceSettings(_FileBackedSettings):
    """A service's settings: `IONFLUX_<SECTION>_*` variables over the `[<section>]` table of the
    config file. Subclasses set `env_prefix="IONFLUX_<SECTION>_"`; a bad value fails at start with one
    line naming the variable (as the core's settings do)."""

    model_config = SettingsConfigDict(extra="ignore")
    sections: ClassVar[dict[str, type[ServiceSettings]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.section():
            ServiceSettings.sections[cls.section()] = cls

    @classmethod
    def section(cls) -> str:
        prefix = str(cls.model_config.get("env_prefix") or "")
        return prefix.removeprefix("IONFLUX_").rstrip("_").lower()

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else "?"
            prefix = str(self.model_config.get("env_prefix") or "")
            raise SettingsError(f"{prefix}{field.upper()} ([{self.section()}] {field} in {config_file()}): "
                                f"{err['msg']} (got {_shown(err.get('input'), field)})") from None

    @classmethod
    def toml_table(cls) -> tuple[str, ...]:
        return (cls.section(),)

    def masked(self) -> dict[str, Any]:
        return _masked(self)


def _masked(settings: BaseSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if isinstance(getattr(settings, name), SecretStr):
            out[name] = "********" if value is not None else None
        elif any(word in name for word in ("password", "secret", "api_key", "access_token")) and value:
            out[name] = "********"
        else:
            out[name] = str(value) if isinstance(value, Path) else value
    return out


def _mask_url(url: str) -> str:
    # user:password@host -> user:***@host
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def load_settings(**overrides: Any) -> Settings:
    """Load settings, turning a validation error into one line that names the variable."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        raise SettingsError(
            f"IONFLUX_{field.upper()}: {err['msg']} (got {_shown(err.get('input'), field)})"
        ) from None
    if settings.master_key_source == "env" and settings.master_key is None:
        raise SettingsError("IONFLUX_MASTER_KEY: required when IONFLUX_MASTER_KEY_SOURCE=env (base64 32 bytes)")
    if settings.master_key_source == "aws-kms" and not settings.kms_key_id:
        raise SettingsError("IONFLUX_KMS_KEY_ID: required when IONFLUX_MASTER_KEY_SOURCE=aws-kms")
    return settings


def _shown(value: Any, field: str) -> str:
    if any(word in field for word in ("key", "token", "secret", "password")):
        return "a value"
    return repr(value)
