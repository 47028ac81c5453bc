"""The webhook inbox: one row per accepted delivery (or per workspace part of one), kept for dedupe,
audit and replay. Nothing that failed verification is ever written here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow

# Stored statuses. The API also reports `published` and `failed`, read from the outbox row of the
# delivery's event (pending -> received, published -> published, dead -> failed).
RECEIVED = "received"
DUPLICATE = "duplicate"


class WebhookDelivery(TenantScoped, Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # NULL keys (duplicates, replays) never collide: NULLs are distinct in SQLite and PostgreSQL.
        Index("uq_webhook_deliveries_dedupe", "provider", "dedupe_key", unique=True),
        Index("ix_webhook_deliveries_ws_received", "workspace_id", "received_at"),
        Index("ix_webhook_deliveries_received", "received_at"),
    )
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    # Every index is written on each insert (the hot path): (workspace_id, received_at) serves the
    # workspace's reads, so the mixin's single-column workspace index is left out.
    workspace_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(64), default=None)
    account: Mapped[str | None] = mapped_column(String(255), default=None)
    delivery_id: Mapped[str] = mapped_column(String(255))
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None)
    topic: Mapped[str] = mapped_column(String(255))  # the provider's own name, e.g. orders/create
    event_type: Mapped[str | None] = mapped_column(String(255), default=None)  # our topic
    event_id: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(16), default=RECEIVED)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    replay_of: Mapped[str | None] = mapped_column(String(64), default=None)
    duplicate_of: Mapped[str | None] = mapped_column(String(64), default=None)
