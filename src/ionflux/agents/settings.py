"""Settings of the agent bridge (`IONFLUX_AGENTS_*`)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from ionflux.core.settings import ServiceSettings


class AgentSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IONFLUX_AGENTS_", extra="ignore")

    runner_poll_seconds: float = Field(default=0.5, gt=0, description="how often the runner looks for due runs")
    scheduler_tick_seconds: float = Field(default=1.0, gt=0, description="how often cron schedules are checked")
    trigger_refresh_seconds: float = Field(default=10.0, gt=0,
                                           description="how often stored definitions' topics are re-subscribed")
    concurrency: int = Field(default=4, gt=0, description="configurations run at once by one process")
    max_attempts: int = Field(default=3, gt=0, description="attempts of one run before it is failed")
    breaker_threshold: int = Field(default=3, gt=0, description="consecutive failures that pause a configuration")
    retry_base_seconds: float = Field(default=2.0, ge=0, description="first retry delay; doubles per attempt")
    retry_max_seconds: float = Field(default=300.0, ge=0)
    run_timeout_seconds: float = Field(default=120.0, gt=0)
    lease_seconds: float = Field(default=300.0, gt=0, description="how long a runner owns a configuration's runs")
    manual_wait_seconds: float = Field(default=30.0, gt=0, description="longest ?wait on a manual run")
