"""Messaging tables (every one TenantScoped): messages sent, inbound messages and statuses seen (the dedupe
keys), contacts' service windows, consent records, and the local cache of message templates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class WaMessage(TenantScoped, Base):
    """One outbound message: accepted -> sent -> delivered -> read, or failed (with the reason)."""

    __tablename__ = "wa_messages"
    __table_args__ = (Index("ix_wa_messages_wamid", "wamid"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(16), default="whatsapp")
    phone_number_id: Mapped[str] = mapped_column(String(64))
    to: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(16))
    template_name: Mapped[str | None] = mapped_column(String(512), default=None)
    business_initiated: Mapped[bool] = mapped_column(default=False)
    wamid: Mapped[str | None] = mapped_column(String(255), default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    context_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WaStatus(TenantScoped, Base):
    """A status webhook seen once per (message id, status): the dedupe key, and the history of a message
    whose status arrived before our send recorded its wamid."""

    __tablename__ = "wa_statuses"
    __table_args__ = (Index("uq_wa_statuses", "workspace_id", "wamid", "status", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    wamid: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column()
    recipient_id: Mapped[str | None] = mapped_column(String(32), default=None)
    errors: Mapped[list[Any] | None] = mapped_column(JSON, default=None)


class WaInbound(TenantScoped, Base):
    """An inbound message, kept once per wamid (the dedupe key for retried and duplicated webhooks)."""

    __tablename__ = "wa_inbound"
    __table_args__ = (Index("uq_wa_inbound", "workspace_id", "wamid", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    wamid: Mapped[str] = mapped_column(String(255))
    phone_number_id: Mapped[str] = mapped_column(String(64))
    wa_id: Mapped[str] = mapped_column(String(32))
    type: Mapped[str] = mapped_column(String(32))
    sent_at: Mapped[datetime] = mapped_column()
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WaContact(TenantScoped, Base):
    """A user as seen by one business number: when they last wrote (the 24-hour window's start)."""

    __tablename__ = "wa_contacts"
    __table_args__ = (Index("uq_wa_contacts", "workspace_id", "phone_number_id", "wa_id", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    wa_id: Mapped[str] = mapped_column(String(32))
    profile_name: Mapped[str | None] = mapped_column(String(255), default=None)
    last_inbound_at: Mapped[datetime | None] = mapped_column(default=None)


class WaConsent(TenantScoped, Base):
    """The workspace's record of a user's consent to business-initiated messages (opt-in and opt-out)."""

    __tablename__ = "wa_consents"
    __table_args__ = (Index("uq_wa_consents", "workspace_id", "wa_id", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    wa_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # opted_in | opted_out
    source: Mapped[str] = mapped_column(String(64))
    text_shown: Mapped[str | None] = mapped_column(Text, default=None)
    opted_in_at: Mapped[datetime | None] = mapped_column(default=None)
    opted_out_at: Mapped[datetime | None] = mapped_column(default=None)
    keyword: Mapped[str | None] = mapped_column(String(64), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WaTemplate(TenantScoped, Base):
    """A message template of the WABA, as last read from Meta or reported by its status webhook."""

    __tablename__ = "wa_templates"
    __table_args__ = (Index("uq_wa_templates", "workspace_id", "waba_id", "name", "language", unique=True),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    waba_id: Mapped[str] = mapped_column(String(64))
    meta_id: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str] = mapped_column(String(512))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    components: Mapped[list[Any]] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
