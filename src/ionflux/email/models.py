"""The email service's tables. Every one is tenant data (`TenantScoped`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class EmailMessage(TenantScoped, Base):
    """One email (one set of to/cc/bcc). Batch members carry their substitutions; the batch holds the body."""

    __tablename__ = "email_messages"
    __table_args__ = (
        Index("uq_email_messages_idempotency", "workspace_id", "idempotency_key", unique=True),
        Index("ix_email_messages_due", "status", "next_attempt_at"),
        Index("ix_email_messages_ws_created", "workspace_id", "created_at"),
        Index("ix_email_messages_provider_id", "provider_message_id"),
        Index("ix_email_messages_batch", "batch_id"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(String(64), default=None)
    batch_index: Mapped[int | None] = mapped_column(Integer, default=None)  # the recipient's place in the batch
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    sender: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"email", "name"?}
    to: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    cc: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    bcc: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    reply_to: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    subject: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str | None] = mapped_column(Text, default=None)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    substitutions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    tag_index: Mapped[str] = mapped_column(Text, default="")  # ",a,b,": tag filters with LIKE on any database
    template_id: Mapped[str | None] = mapped_column(String(128), default=None)
    marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    refused: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # recipients not sent to
    status: Mapped[str] = mapped_column(String(16), default="queued")
    status_at: Mapped[datetime] = mapped_column(default=utcnow)
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_at: Mapped[datetime | None] = mapped_column(default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=utcnow)  # None: nothing left to send
    claimed_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailStatusChange(TenantScoped, Base):
    """The history of a message's status, one row per change or provider event (with its recipient)."""

    __tablename__ = "email_status_changes"
    __table_args__ = (Index("ix_email_status_changes_message", "message_id", "seq"),)
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    recipient: Mapped[str | None] = mapped_column(String(320), default=None)
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EmailBatch(TenantScoped, Base):
    __tablename__ = "email_batches"
    __table_args__ = (Index("uq_email_batches_idempotency", "workspace_id", "idempotency_key", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), default=None)
    template_id: Mapped[str | None] = mapped_column(String(128), default=None)
    text: Mapped[str | None] = mapped_column(Text, default=None)  # the body with substitution tags
    html: Mapped[str | None] = mapped_column(Text, default=None)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailTemplate(TenantScoped, Base):
    __tablename__ = "email_templates"
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text, default=None)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    marketing: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EmailSuppression(TenantScoped, Base):
    __tablename__ = "email_suppressions"
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower-cased
    reason: Mapped[str] = mapped_column(String(32))  # bounce | complaint | unsubscribe | manual
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailProviderEvent(TenantScoped, Base):
    """Provider events already applied (SendGrid `sg_event_id`, SES feedback ids): each counts once."""

    __tablename__ = "email_provider_events"
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(64), default=None)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class EmailWorkspaceSettings(TenantScoped, Base):
    """A workspace's choice of provider (its keys are in the vault); absent: the platform's default."""

    __tablename__ = "email_workspace_settings"
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    fallback_provider: Mapped[str | None] = mapped_column(String(32), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
