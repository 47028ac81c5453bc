"""Core tables. Every table that holds tenant data mixes in `TenantScoped` (see `core.db`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ionflux.core.ids import random_hex

PLATFORM_WORKSPACE = "__platform__"  # owner of platform-managed credentials


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    """A random UUID in its canonical form (36 characters)."""
    h = random_hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_workspace_id() -> str:
    # 32 hex characters, no dashes: workspace ids end up inside names with length limits (vector
    # namespaces such as `agent001_memory_for_workspace_{{workspace_id}}` must fit in 64 characters).
    return random_hex()


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class TenantScoped:
    """Marker: rows belong to one workspace; tenant sessions only ever see their own (core.db)."""

    workspace_id: Mapped[str] = mapped_column(String(64), index=True)


class Workspace(Base):
    __tablename__ = "workspaces"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_workspace_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(TenantScoped, Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="default")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Credential(TenantScoped, Base):
    """A secret bundle, envelope-encrypted; AAD binds it to (workspace_id, provider, name)."""

    __tablename__ = "credentials"
    __table_args__ = (Index("uq_credentials_owner", "workspace_id", "provider", "name", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64), default="default")
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(128))
    hint: Mapped[str] = mapped_column(String(16), default="")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxEvent(TenantScoped, Base):
    """An event written in the same transaction as the change that caused it; the relay publishes it."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_pending", "status", "next_attempt_at"),
        Index("ix_outbox_ws_seq", "workspace_id", "seq"),
    )
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(String(64), unique=True, default=new_id)
    type: Mapped[str] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(255))
    subject: Mapped[str | None] = mapped_column(String(255), default=None)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | published | dead
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)


class ProcessedEvent(TenantScoped, Base):
    """Which consumer already handled which event: makes at-least-once delivery act once."""

    __tablename__ = "processed_events"
    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Connection(TenantScoped, Base):
    """A workspace's link to one account at a provider (a Shopify shop, a WhatsApp number, an OAuth grant).

    `external_id` is how the provider names the account (shop domain, phone number id, …); webhooks
    find their workspace through it, so it is unique per provider.
    """

    __tablename__ = "connections"
    __table_args__ = (Index("uq_connections_external", "provider", "external_id", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    provider: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | needs_reauth | revoked
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    credential_name: Mapped[str] = mapped_column(String(64), default="default")
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    token_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
