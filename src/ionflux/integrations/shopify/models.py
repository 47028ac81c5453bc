"""Tables of the Shopify integration. Every one is tenant data (`TenantScoped`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class ShopifyWorkspaceSettings(TenantScoped, Base):
    """Per-workspace choices. `pii_enabled`: customer fields reach events and local tables unredacted."""

    __tablename__ = "shopify_workspace_settings"
    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pii_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ShopifyShop(TenantScoped, Base):
    """The shop behind a connection, as fetched on connect (and refreshed on shop/update)."""

    __tablename__ = "shopify_shops"
    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    shop_domain: Mapped[str] = mapped_column(String(255), index=True)
    shop_gid: Mapped[str | None] = mapped_column(String(100), default=None)
    name: Mapped[str | None] = mapped_column(String(255), default=None)
    currency: Mapped[str | None] = mapped_column(String(8), default=None)
    iana_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    webhooks: Mapped[dict[str, Any]] = mapped_column(default=dict)  # topic -> subscription gid
    reconciled_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class _Record:
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(String(64))
    shopify_id: Mapped[str] = mapped_column(String(32))  # the numeric (legacy resource) id
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the normalised record
    source_updated_at: Mapped[datetime] = mapped_column()  # Shopify's updated_at of `data`
    # The newest version an event was published for: a change is published at most once.
    published_updated_at: Mapped[datetime | None] = mapped_column(default=None)
    stored_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ShopifyOrder(_Record, TenantScoped, Base):
    __tablename__ = "shopify_orders"
    __table_args__ = (
        Index("uq_shopify_orders_item", "connection_id", "shopify_id", unique=True),
        Index("ix_shopify_orders_created", "connection_id", "created_at"),
    )
    created_at: Mapped[datetime] = mapped_column()
    customer_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)


class ShopifyProduct(_Record, TenantScoped, Base):
    __tablename__ = "shopify_products"
    __table_args__ = (Index("uq_shopify_products_item", "connection_id", "shopify_id", unique=True),)


class ShopifySyncRun(TenantScoped, Base):
    """A backfill or reconciliation pass, with its checkpoint: it resumes from here after a crash."""

    __tablename__ = "shopify_sync_runs"
    __table_args__ = (Index("ix_shopify_sync_runs_conn", "connection_id", "status"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # backfill | reconcile
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | completed | failed | stopped
    stage: Mapped[str] = mapped_column(String(16), default="products")  # products -> orders -> done
    cursor: Mapped[str | None] = mapped_column(Text, default=None)  # last page's endCursor in `stage`
    since: Mapped[datetime | None] = mapped_column(default=None)  # reconcile: updated_at lower bound
    pages: Mapped[int] = mapped_column(Integer, default=0)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    products: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)  # a live worker renews it
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class ShopifyPrivacyRequest(TenantScoped, Base):
    """A mandatory compliance webhook (customers/data_request, customers/redact, shop/redact) and what we did."""

    __tablename__ = "shopify_privacy_requests"
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    connection_id: Mapped[str | None] = mapped_column(String(64), default=None)
    shop_domain: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(32), default=None)
    outcome: Mapped[dict[str, Any]] = mapped_column(default=dict)  # counts of what was found/redacted/deleted
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
