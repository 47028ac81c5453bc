"""Server-side `state`: unguessable, short-lived, single use, bound to who asked for what.

The state travels in the authorize URL and comes back on the callback; the database keeps only its
SHA-256 (a 256-bit random value needs no slow hash). Consuming is one conditional UPDATE
(`consumed_at IS NULL AND expires_at > now AND <bindings match>`), so of two concurrent callbacks
exactly one wins on either database. A presentation that fails a binding does not burn the state.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, CursorResult, delete, select, update

from ionflux.core.db import Database
from ionflux.core.oauth.errors import OAuthStateError
from ionflux.core.oauth.models import OAuthState

STATE_BYTES = 32
_SEAL_INFO = b"ionflux.oauth.pkce-verifier.v1"
_PURGE_AFTER = timedelta(days=1)  # consumed/expired rows are kept a day for diagnosis, then deleted


@dataclass(frozen=True)
class PendingAuthorization:
    """What a consumed state was bound to. `verifier` is the PKCE verifier, opened with the state."""

    id: str
    workspace_id: str
    provider: str
    flavor: str
    connection_id: str | None
    user_id: str | None
    redirect_uri: str
    scopes: list[str]
    url_vars: dict[str, Any]
    connection_hint: str | None
    verifier: str | None

    def __repr__(self) -> str:
        return f"PendingAuthorization(id={self.id!r}, provider={self.provider!r}, workspace={self.workspace_id!r})"


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


class StateStore:
    def __init__(self, db: Database, *, ttl: timedelta, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock

    async def issue(
        self, workspace_id: str, *, provider: str, flavor: str, redirect_uri: str, scopes: Sequence[str],
        user_id: str | None, connection_id: str | None, url_vars: dict[str, Any],
        connection_hint: str | None, verifier: str | None,
    ) -> str:
        state = secrets.token_urlsafe(STATE_BYTES)
        digest = state_hash(state)
        now = self.clock()
        async with self.db.tenant(workspace_id) as session:
            await session.execute(
                delete(OAuthState).where(OAuthState.expires_at < now - _PURGE_AFTER)
                .execution_options(synchronize_session=False)
            )
            session.add(OAuthState(
                workspace_id=workspace_id, state_hash=digest, provider=provider, flavor=flavor,
                connection_id=connection_id, user_id=user_id, redirect_uri=redirect_uri, scopes=list(scopes),
                url_vars=url_vars, connection_hint=connection_hint, created_at=now, expires_at=now + self.ttl,
                sealed_verifier=_seal(state, digest, verifier) if verifier else None,
            ))
        return state

    async def consume(self, state: str, *, provider: str, workspace_id: str | None = None,
                      user_id: str | None = None) -> PendingAuthorization:
        """Use `state` once. `workspace_id`, when the callback knows it, must be the one bound at start;
        a state bound to a user must be presented with that user."""
        if not state:
            raise OAuthStateError("missing", "the callback has no state parameter")
        digest = state_hash(state)
        now = self.clock()
        bindings: list[ColumnElement[bool]] = [OAuthState.provider == provider]
        if workspace_id is not None:
            bindings.append(OAuthState.workspace_id == workspace_id)
        bindings.append(OAuthState.user_id.is_(None) if user_id is None
                        else (OAuthState.user_id.is_(None)) | (OAuthState.user_id == user_id))
        async with self.db.system() as session:
            result = cast(CursorResult[Any], await session.execute(
                update(OAuthState)
                .where(OAuthState.state_hash == digest, OAuthState.consumed_at.is_(None),
                       OAuthState.expires_at > now, *bindings)
                .values(consumed_at=now).execution_options(synchronize_session=False)
            ))
            row = await session.scalar(select(OAuthState).where(OAuthState.state_hash == digest))
        if result.rowcount != 1:
            raise _diagnose(row, now)
        assert row is not None
        return PendingAuthorization(
            id=row.id, workspace_id=row.workspace_id, provider=row.provider, flavor=row.flavor,
            connection_id=row.connection_id, user_id=row.user_id, redirect_uri=row.redirect_uri,
            scopes=list(row.scopes or []), url_vars=dict(row.url_vars or {}), connection_hint=row.connection_hint,
            verifier=_open(state, digest, row.sealed_verifier) if row.sealed_verifier else None,
        )


def _diagnose(row: OAuthState | None, now: datetime) -> OAuthStateError:
    if row is None:
        return OAuthStateError("unknown", "unknown state: it was not issued here (or was purged); start again")
    if row.consumed_at is not None:
        return OAuthStateError("used", "this state was already used; start the connection again")
    if _aware(row.expires_at) <= now:
        return OAuthStateError("expired", "this state expired before the callback arrived; start again")
    return OAuthStateError("mismatch", "this state was issued for another provider, workspace or user")


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _key(state: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(state.encode())


def _seal(state: str, digest: str, verifier: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(_key(state)).encrypt(nonce, verifier.encode(), digest.encode())


def _open(state: str, digest: str, sealed: bytes) -> str:
    try:
        return AESGCM(_key(state)).decrypt(sealed[:12], sealed[12:], digest.encode()).decode()
    except (InvalidTag, ValueError):
        raise OAuthStateError("unknown", "the stored PKCE verifier does not open with this state") from None
