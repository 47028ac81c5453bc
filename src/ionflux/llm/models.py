"""The LLM service's tables: one usage row per request, and per-workspace limits set by an admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class LLMUsage(TenantScoped, Base):
    """What one request used and cost (tokens as the provider reported them; cost from the price table)."""

    __tablename__ = "llm_usage"
    __table_args__ = (Index("ix_llm_usage_ws_time", "workspace_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str | None] = mapped_column(String(128), default=None)
    task_type: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(160))  # provider:model that answered (or was last tried)
    status: Mapped[str] = mapped_column(String(16))  # success | error
    error_code: Mapped[str | None] = mapped_column(String(32), default=None)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    key_source: Mapped[str | None] = mapped_column(String(16), default=None)  # workspace | platform | None
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LLMLimits(TenantScoped, Base):
    """A workspace's budget (USD per period) and per-minute limits; NULL means the configured default."""

    __tablename__ = "llm_limits"
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    budget_usd: Mapped[float | None] = mapped_column(Float, default=None)
    rpm: Mapped[int | None] = mapped_column(Integer, default=None)
    tpm: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
