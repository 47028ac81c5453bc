"""Tables of the agent bridge: definitions, configurations, runs (the AgentRunLog) and per-configuration state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class AgentDefinitionRow(TenantScoped, Base):
    """A workspace's own agent definition (built-in definitions live in code, see `agents.builtin`)."""

    __tablename__ = "agent_definitions"
    __table_args__ = (Index("uq_agent_definitions_ws_id", "workspace_id", "definition_id", unique=True),)
    pk: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    definition_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the normalised blueprint
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentConfigurationRow(TenantScoped, Base):
    __tablename__ = "agent_configurations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    definition_id: Mapped[str] = mapped_column(String(100), index=True)
    definition_version: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    brand_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | paused
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    yaml_config: Mapped[str] = mapped_column(Text, default="")
    effective_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    external_memory_namespace: Mapped[str | None] = mapped_column(String(64), default=None)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    schedule_cursor: Mapped[datetime | None] = mapped_column(default=None)  # last cron slot considered
    lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AgentRunRow(TenantScoped, Base):
    """One run of a configuration. (configuration_id, trigger_key) is unique: an event id, a cron slot or a
    manual request runs once, whichever process or worker saw it first."""

    __tablename__ = "agent_runs"
    __table_args__ = (
        Index("uq_agent_runs_trigger", "configuration_id", "trigger_key", unique=True),
        Index("ix_agent_runs_due", "status", "next_attempt_at"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    configuration_id: Mapped[str] = mapped_column(ForeignKey("agent_configurations.id", ondelete="CASCADE"))
    trigger_type: Mapped[str] = mapped_column(String(16))  # event | schedule | manual
    trigger_key: Mapped[str] = mapped_column(String(128))
    trigger_event_id: Mapped[str | None] = mapped_column(String(64), default=None)
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed|skipped
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(default=None)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AgentStateRow(TenantScoped, Base):
    """Small durable facts an agent keeps between runs (e.g. 'alerted for order 123'), per configuration."""

    __tablename__ = "agent_state"
    configuration_id: Mapped[str] = mapped_column(
        ForeignKey("agent_configurations.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
