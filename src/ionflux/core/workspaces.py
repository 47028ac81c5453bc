"""Workspaces and their API tokens. Tokens are shown once; only a SHA-256 hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.models import ApiToken, Workspace, utcnow
from ionflux.core.ttl_cache import TtlCache

TOKEN_PREFIX = "ifx_"  # noqa: S105 - a prefix, not a secret


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class CreatedWorkspace:
    id: str
    name: str
    token: str


class WorkspaceDirectory:
    def __init__(self, db: Database, *, token_cache_seconds: float = 0.0) -> None:
        self.db = db
        # Every API call authenticates: trust a verified token for a few seconds without a lookup.
        # Revocation in this process clears it at once; in another process it takes effect within
        # token_cache_seconds. Unknown tokens are never cached (a new token works at once).
        self.token_cache_seconds = token_cache_seconds
        self._verified: TtlCache[str, str | None] = TtlCache(token_cache_seconds, keep=lambda found: found is not None)

    async def create(self, name: str) -> CreatedWorkspace:
        name = name.strip()
        if not name or len(name) > 200:
            raise ValueError("workspace name must be 1-200 characters")
        ws = Workspace(name=name)
        async with self.db.system() as session:
            session.add(ws)
            await session.flush()
        token = await self.issue_token(ws.id)
        return CreatedWorkspace(ws.id, ws.name, token)

    async def issue_token(self, workspace_id: str, name: str = "default") -> str:
        token = new_token()
        async with self.db.tenant(workspace_id) as session:
            session.add(ApiToken(token_hash=hash_token(token), prefix=token[:10], name=name))
        return token

    async def exists(self, workspace_id: str) -> bool:
        async with self.db.system() as session:
            return (await session.get(Workspace, workspace_id)) is not None

    async def workspace_for_token(self, token: str) -> str | None:
        digest = hash_token(token)
        return await self._verified.get(digest, lambda: self._lookup(digest))

    async def _lookup(self, digest: str) -> str | None:
        async with self.db.system() as session:
            row = (
                await session.execute(
                    select(ApiToken.workspace_id, ApiToken.token_hash).where(
                        ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None)
                    )
                )
            ).first()
        # The lookup is by hash (an index probe on a value the caller cannot steer); compare anyway.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return str(row.workspace_id)

    async def revoke(self, workspace_id: str, prefix: str) -> int:
        async with self.db.tenant(workspace_id) as session:
            tokens = (await session.scalars(select(ApiToken).where(ApiToken.prefix == prefix))).all()
            for tok in tokens:
                tok.revoked_at = utcnow()
        self._verified.forget()
        return len(tokens)
