"""Keeping a connection's tokens usable: proactive refresh, single flight, rotation, revocation.

Single flight, in two layers. In a process, concurrent callers for one connection share one refresh
task (they all get its token, or its error). Across processes, that task runs under the connection's
database lock (`locks.py`) and first re-reads the vault: if another process refreshed while we
waited, its token is used and the provider is not called. Refresh tokens are never reused or retried
after a sent request, because providers that rotate them (Shopify, TikTok, Atlassian, Calendly)
invalidate the old one on use.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from ionflux.core.bus import emit
from ionflux.core.db import Database
from ionflux.core.errors import IonfluxError, NotFound
from ionflux.core.models import Connection
from ionflux.core.oauth.catalogue import CATALOGUE, ProviderSpec
from ionflux.core.oauth.errors import ReauthorizationRequired, TokenEndpointError
from ionflux.core.oauth.locks import ConnectionLock
from ionflux.core.oauth.store import StoredTokens, delete_tokens, load_tokens, save_tokens
from ionflux.core.oauth.tokens import ClientCredentials, TokenEndpoint
from ionflux.core.vault import Vault

log = logging.getLogger("ionflux.oauth")


async def client_credentials(vault: Vault, workspace_id: str, spec: ProviderSpec) -> ClientCredentials:
    """The OAuth app's id and secret: the workspace's own app if it has one, else the platform's."""
    resolved = await vault.resolve(workspace_id, spec.provider, spec.app_credential)
    missing = [f for f in (spec.client_id_field, spec.client_secret_field) if f not in resolved.secrets]
    if missing and spec.token_auth != "secret_key_basic":  # noqa: S105 (an auth style name)
        raise NotFound(f"the {spec.provider} OAuth app credential lacks {', '.join(missing)} "
                       f"(set IONFLUX_{spec.provider.upper()}_{missing[0].upper()})", field="provider")
    secrets = resolved.secrets
    return ClientCredentials(secrets.get(spec.client_id_field, ""), secrets.get(spec.client_secret_field, ""))


def fill_url(template: str, variables: Mapping[str, Any]) -> str:
    for name, value in variables.items():
        template = template.replace("{" + name + "}", str(value))
    return template


class TokenUpkeep:
    catalogue: dict[str, ProviderSpec]

    def __init__(self, db: Database, vault: Vault, *, endpoint: TokenEndpoint, lock: ConnectionLock,
                 clock: Callable[[], datetime], refresh_skew: timedelta) -> None:
        self.db, self.vault, self.endpoint, self.lock = db, vault, endpoint, lock
        self.clock = clock
        self.refresh_skew = refresh_skew
        self.catalogue = dict(CATALOGUE)
        self._inflight: dict[tuple[str, str], asyncio.Task[str]] = {}
        # flights: refresh tasks started here; refreshed: provider refreshes done here; adopted: a flight
        # that found another process's fresh token instead of calling the provider.
        self.stats: Counter[str] = Counter()

    async def access_token(self, workspace_id: str, connection_id: str) -> str:
        """A usable access token, refreshed first when it expires within `refresh_skew`."""
        connection = _usable(await self._connection(workspace_id, connection_id))
        tokens = await load_tokens(self.vault, workspace_id, connection.provider, connection.credential_name)
        if tokens is not None and tokens.fresh(self.clock(), self.refresh_skew):
            return tokens.access_token
        key = (workspace_id, connection_id)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(
                self.lock.run(workspace_id, connection_id, lambda: self._refresh(workspace_id, connection_id),
                              probe=lambda: self._fresh_token(workspace_id, connection))
            )
            self._inflight[key] = task
            self.stats["flights"] += 1
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)  # one caller cancelling must not cancel the others' refresh

    def _finished(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an error nobody awaited is not reported as lost

    async def _fresh_token(self, workspace_id: str, connection: Connection) -> str | None:
        tokens = await load_tokens(self.vault, workspace_id, connection.provider, connection.credential_name)
        if tokens is None or not tokens.fresh(self.clock(), self.refresh_skew):
            return None
        self.stats["adopted"] += 1
        return tokens.access_token

    async def _refresh(self, workspace_id: str, connection_id: str) -> str:
        # Holding the lock now. Re-read everything: another process may have refreshed or revoked.
        connection = _usable(await self._connection(workspace_id, connection_id))
        provider, name = connection.provider, connection.credential_name
        tokens = await load_tokens(self.vault, workspace_id, provider, name)
        now = self.clock()
        if tokens is not None and tokens.fresh(now, self.refresh_skew):
            self.stats["adopted"] += 1
            return tokens.access_token
        if tokens is None or not tokens.refresh_token:
            reason = "no_tokens" if tokens is None else "expired_without_refresh_token"
            await self._needs_reauth(connection, reason)
            raise ReauthorizationRequired(f"the {provider} token expired and cannot be refreshed; reconnect",
                                          details={"connection_id": connection_id, "reason": reason})
        spec = self._spec_of(connection)
        creds = await client_credentials(self.vault, workspace_id, spec)
        url = fill_url(spec.token_url, _oauth_meta(connection).get("url_vars", {}))
        try:
            issued = await self.endpoint.refresh(spec, creds, url=url, refresh_token=tokens.refresh_token)
        except TokenEndpointError as exc:
            if exc.error != "invalid_grant":
                raise
            await self._needs_reauth(connection, "invalid_grant")
            raise ReauthorizationRequired(f"{provider} refused the refresh token (invalid_grant); reconnect",
                                          details={"connection_id": connection_id, "reason": "invalid_grant"}) from None
        stored = StoredTokens.issued(issued, self.clock(), previous=tokens)
        await save_tokens(self.vault, workspace_id, provider, name, stored)  # before anything can fail
        self.stats["refreshed"] += 1
        async with self.db.tenant(workspace_id) as session:
            values: dict[str, Any] = {"token_expires_at": stored.expires_at}
            if issued.scope is not None:
                values["scopes"] = [s for s in issued.scope.split(spec.scope_separator) if s.strip()]
            await session.execute(update(Connection).where(Connection.id == connection_id).values(**values)
                                  .execution_options(synchronize_session=False))
        log.info("oauth token refreshed", extra={"workspace_id": workspace_id, "provider": provider,
                                                 "connection_id": connection_id, "rotated": bool(issued.refresh_token)})
        return stored.access_token

    async def revoke(self, workspace_id: str, connection_id: str) -> Connection:
        """Revoke at the provider when it has an endpoint (best effort), delete the tokens, mark revoked."""
        connection = await self._connection(workspace_id, connection_id)

        async def work() -> Connection:
            return await self._revoke(workspace_id, connection)

        async def never() -> Connection | None:
            return None

        return await self.lock.run(workspace_id, connection_id, work, probe=never)

    async def _revoke(self, workspace_id: str, connection: Connection) -> Connection:
        spec = self._spec_of(connection)
        tokens = await load_tokens(self.vault, workspace_id, connection.provider, connection.credential_name)
        provider_revoked: bool | None = None
        if spec.revoke is not None and tokens is not None:
            use_refresh = spec.revoke.token_kind == "refresh_token" and tokens.refresh_token  # noqa: S105
            token = tokens.refresh_token if use_refresh and tokens.refresh_token else tokens.access_token
            try:
                creds = await client_credentials(self.vault, workspace_id, spec)
                url = fill_url(spec.revoke.url, _oauth_meta(connection).get("url_vars", {}))
                await self.endpoint.revoke(spec, creds, url=url, token=token, external_id=connection.external_id)
                provider_revoked = True
            except IonfluxError as exc:  # still disconnect locally: the person asked for it
                provider_revoked = False
                log.warning("provider revocation failed; tokens deleted locally",
                            extra={"provider": connection.provider, "connection_id": connection.id, "code": exc.code})
        await delete_tokens(self.vault, workspace_id, connection.provider, connection.credential_name)
        async with self.db.tenant(workspace_id) as session:
            row = await session.scalar(select(Connection).where(Connection.id == connection.id))
            if row is None:
                raise NotFound(f"no connection {connection.id} in this workspace", field="connection_id")
            row.status, row.token_expires_at = "revoked", None
            emit(session, type=f"platform.{row.provider}.events.connections.revoked", subject=row.id,
                 data={"connection_id": row.id, "external_id": row.external_id, "provider_revoked": provider_revoked})
        log.info("oauth connection revoked", extra={"workspace_id": workspace_id, "provider": row.provider,
                                                    "connection_id": row.id, "provider_revoked": provider_revoked})
        return row

    async def _needs_reauth(self, connection: Connection, reason: str) -> None:
        async with self.db.tenant(connection.workspace_id) as session:
            result = cast(CursorResult[Any], await session.execute(
                update(Connection).where(Connection.id == connection.id, Connection.status == "active")
                .values(status="needs_reauth").execution_options(synchronize_session=False)
            ))
            if result.rowcount == 1:
                emit(session, type=f"platform.{connection.provider}.events.connections.needs_reauth",
                     subject=connection.id, data={"connection_id": connection.id,
                                                  "external_id": connection.external_id, "reason": reason})
        log.warning("oauth connection needs re-authorization",
                    extra={"provider": connection.provider, "connection_id": connection.id, "reason": reason})

    async def _connection(self, workspace_id: str, connection_id: str) -> Connection:
        async with self.db.tenant(workspace_id) as session:
            row = await session.scalar(select(Connection).where(Connection.id == connection_id))
        if row is None:
            raise NotFound(f"no connection {connection_id} in this workspace", field="connection_id")
        return row

    def _spec_of(self, connection: Connection) -> ProviderSpec:
        flavor = _oauth_meta(connection).get("flavor") or connection.provider
        spec = self.catalogue.get(flavor)
        if spec is None:
            raise NotFound(f"no OAuth catalogue entry {flavor!r} for this connection", field="provider")
        return spec


def _oauth_meta(connection: Connection) -> dict[str, Any]:
    meta = (connection.meta or {}).get("oauth", {})
    return meta if isinstance(meta, dict) else {}


def _usable(connection: Connection) -> Connection:
    if connection.status != "active":
        raise ReauthorizationRequired(
            f"connection {connection.id} is {connection.status}; a person must reconnect it",
            details={"connection_id": connection.id, "status": connection.status},
        )
    return connection
