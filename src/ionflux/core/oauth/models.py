"""Tables of the OAuth toolkit: pending authorization states and cross-process refresh leases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ionflux.core.models import Base, TenantScoped, new_id, utcnow


class OAuthState(TenantScoped, Base):
    """One authorization request in flight. The `state` itself is never stored: only its SHA-256.

    The PKCE verifier is sealed with a key derived from the state (HKDF), so a database reader who
    lacks the state in the callback URL cannot redeem an intercepted code.
    """

    __tablename__ = "oauth_states"
    __table_args__ = (Index("ix_oauth_states_expires_at", "expires_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    provider: Mapped[str] = mapped_column(String(64))
    flavor: Mapped[str] = mapped_column(String(64))  # catalogue key, e.g. tiktok_desktop
    connection_id: Mapped[str | None] = mapped_column(String(64), default=None)  # re-consent / more scopes
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    url_vars: Mapped[dict[str, Any]] = mapped_column(default=dict)
    connection_hint: Mapped[str | None] = mapped_column(String(255), default=None)
    sealed_verifier: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    consumed_at: Mapped[datetime | None] = mapped_column(default=None)


class OAuthRefreshLease(TenantScoped, Base):
    """Who may refresh a connection's tokens right now (SQLite; PostgreSQL uses an advisory lock).

    Taken by compare-and-set (holder free or lease expired), so a crashed holder blocks others only
    until `expires_at`.
    """

    __tablename__ = "oauth_refresh_leases"
    connection_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
