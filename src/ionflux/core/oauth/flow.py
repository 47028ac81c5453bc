"""`OAuthFlow`: authorization-code flow from authorize URL to a connection with tokens in the vault.

    url = await flow.start(ws, "shopify", scopes=[...], redirect_uri=..., user_id=..., url_vars={"shop": s})
    connection = await flow.complete("shopify", callback_query, workspace_id=ws, user_id=...)
    token = await flow.access_token(ws, connection.id)   # refreshed first if it expires within the skew
    await flow.revoke(ws, connection.id)

Integrations add their own initiate/callback routes around these calls (and provider extras such as
Shopify's callback HMAC). Token upkeep (refresh, single flight, revocation) lives in `upkeep.py`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ionflux.core.bus import emit
from ionflux.core.db import Database
from ionflux.core.errors import Conflict, InvalidRequest, NotFound
from ionflux.core.models import Connection, new_id, utcnow
from ionflux.core.oauth import pkce
from ionflux.core.oauth.catalogue import CATALOGUE, ProviderSpec
from ionflux.core.oauth.errors import AuthorizationDenied, OAuthStateError
from ionflux.core.oauth.locks import ConnectionLock
from ionflux.core.oauth.state import PendingAuthorization, StateStore
from ionflux.core.oauth.store import StoredTokens, delete_tokens, save_tokens, token_credential_name
from ionflux.core.oauth.tokens import ProviderClientTransport, TokenEndpoint, TokenSet, TokenTransport
from ionflux.core.oauth.upkeep import TokenUpkeep, client_credentials, fill_url
from ionflux.core.vault import Vault

if TYPE_CHECKING:
    from ionflux.core.platform import Platform

log = logging.getLogger("ionflux.oauth")
_SCOPE_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable, no spaces: one scope token


class OAuthFlow(TokenUpkeep):
    def __init__(
        self, db: Database, vault: Vault, *, providers: Mapping[str, ProviderSpec] | None = None,
        transport: TokenTransport | None = None, clock: Callable[[], datetime] = utcnow,
        state_ttl: timedelta = timedelta(minutes=10), refresh_skew: timedelta = timedelta(minutes=5),
        refresh_lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self._transport = transport or ProviderClientTransport()
        super().__init__(db, vault, endpoint=TokenEndpoint(self._transport),
                         lock=ConnectionLock(db, lease=refresh_lease), clock=clock, refresh_skew=refresh_skew)
        self.catalogue: dict[str, ProviderSpec] = {**CATALOGUE, **(providers or {})}
        self.states = StateStore(db, ttl=state_ttl, clock=clock)

    @classmethod
    def for_platform(cls, platform: Platform, **options: Any) -> OAuthFlow:
        options.setdefault("transport", ProviderClientTransport(registry=platform.metrics.registry))
        return cls(platform.db, platform.vault, **options)

    async def aclose(self) -> None:
        if isinstance(self._transport, ProviderClientTransport):
            await self._transport.aclose()

    def spec(self, key: str) -> ProviderSpec:
        try:
            return self.catalogue[key]
        except KeyError:
            raise InvalidRequest(f"unknown OAuth provider {key!r}; known: {', '.join(sorted(self.catalogue))}",
                                 field="provider") from None

    async def start(
        self, workspace_id: str, provider: str, *, scopes: Sequence[str], redirect_uri: str,
        user_id: str | None = None, connection_id: str | None = None, connection_hint: str | None = None,
        url_vars: Mapping[str, str] | None = None, extra_params: Mapping[str, str] | None = None,
    ) -> str:
        """The URL to send the user to. `connection_id` asks an existing connection for more scopes (the
        union of granted and requested) or re-consent; `connection_hint` names the account when the
        provider's token answer does not (it becomes external_id)."""
        spec = self.spec(provider)
        _check_redirect_uri(redirect_uri)
        wanted, variables = _check_scopes(scopes), dict(url_vars or {})
        if connection_id is not None:
            existing = await self._connection(workspace_id, connection_id)
            if existing.provider != spec.provider:
                raise InvalidRequest(f"connection {connection_id} is a {existing.provider} connection",
                                     field="connection_id")
            wanted = _union(existing.scopes or [], wanted)
            variables = {**(existing.meta or {}).get("oauth", {}).get("url_vars", {}), **variables}
        _check_url_vars(spec, variables)
        creds = await client_credentials(self.vault, workspace_id, spec)
        verifier = pkce.new_verifier() if spec.pkce else None
        state = await self.states.issue(
            workspace_id, provider=spec.provider, flavor=spec.key, redirect_uri=redirect_uri, scopes=wanted,
            user_id=user_id, connection_id=connection_id, url_vars=variables, connection_hint=connection_hint,
            verifier=verifier,
        )
        params: dict[str, str] = {spec.client_id_param: creds.client_id, "redirect_uri": redirect_uri}
        if wanted:
            params[spec.scope_param] = spec.scope_separator.join(wanted)
        params.update(spec.authorize_params)
        params["state"] = state
        if spec.pkce and verifier:
            params["code_challenge"] = pkce.challenge(verifier, spec.pkce)
            params["code_challenge_method"] = spec.pkce.method_param
        params.update(extra_params or {})
        base = fill_url(spec.authorize_url, variables)
        return base + ("&" if "?" in base else "?") + urlencode(params, quote_via=quote)

    async def complete(self, provider: str, params: Mapping[str, str], *, workspace_id: str | None = None,
                       user_id: str | None = None) -> Connection:
        """Finish the flow from the callback's query parameters; returns the active connection."""
        name = self.catalogue[provider].provider if provider in self.catalogue else provider
        state = params.get("state") or ""
        if params.get("error"):
            with suppress(OAuthStateError):  # close the pending authorization; it can never finish
                await self.states.consume(state, provider=name, workspace_id=workspace_id, user_id=user_id)
            described = str(params.get("error_description") or "")[:200]
            raise AuthorizationDenied(f"{name} did not authorize: {params['error'][:64]}"
                                      + (f" ({described})" if described else ""), field="error")
        pending = await self.states.consume(state, provider=name, workspace_id=workspace_id, user_id=user_id)
        spec = self.spec(pending.flavor)
        for var, value in pending.url_vars.items():
            if var in params and params[var] != value:
                raise OAuthStateError("mismatch", f"the callback's {var} is not the one this authorization "
                                                  "was started for")
        code = params.get("code")
        if not code:
            raise InvalidRequest("the callback has no code parameter", field="code")
        creds = await client_credentials(self.vault, pending.workspace_id, spec)
        tokens = await self.endpoint.exchange_code(
            spec, creds, url=fill_url(spec.token_url, pending.url_vars), code=code,
            redirect_uri=pending.redirect_uri, verifier=pending.verifier,
        )
        granted = _split(tokens.scope, spec.scope_separator) if tokens.scope is not None else pending.scopes
        return await self._save_grant(pending, spec, tokens, granted)

    async def _save_grant(self, pending: PendingAuthorization, spec: ProviderSpec, tokens: TokenSet,
                          granted: list[str]) -> Connection:
        ws, now = pending.workspace_id, self.clock()
        external_id = _external_id(spec, tokens, pending)
        target = await self._grant_target(pending, spec, external_id)
        connection_id = target.id if target is not None else new_id()
        name = token_credential_name(connection_id)
        stored = StoredTokens.issued(tokens, now)
        await save_tokens(self.vault, ws, spec.provider, name, stored)  # first: a crash leaves no tokenless row
        oauth_meta = {"flavor": spec.key, "url_vars": pending.url_vars, "authorized_by": pending.user_id}
        try:
            async with self.db.tenant(ws) as session:
                if target is None:
                    row = Connection(id=connection_id, provider=spec.provider, external_id=external_id or connection_id)
                    session.add(row)
                else:
                    row = await self._row(session, connection_id)
                row.status, row.scopes, row.credential_name = "active", granted, name
                row.token_expires_at = stored.expires_at
                row.meta = {**(row.meta or {}), "oauth": oauth_meta}
                await session.flush()
                emit(session, type=f"platform.{spec.provider}.events.connections.authorized", subject=row.id,
                     data={"connection_id": row.id, "external_id": row.external_id, "scopes": granted,
                           "new": target is None})
        except IntegrityError:
            if target is None:
                await delete_tokens(self.vault, ws, spec.provider, name)
            raise Conflict(f"this {spec.provider} account is already connected to another workspace",
                           field="external_id") from None
        log.info("oauth connection authorized", extra={"workspace_id": ws, "provider": spec.provider,
                                                       "connection_id": row.id, "scopes": granted})
        return row

    async def _grant_target(self, pending: PendingAuthorization, spec: ProviderSpec,
                            external_id: str | None) -> Connection | None:
        """The connection this grant goes to: the one being extended, or the same account's, or new."""
        if pending.connection_id is not None:
            existing = await self._connection(pending.workspace_id, pending.connection_id)
            placeholder = existing.external_id == existing.id
            if external_id and existing.external_id != external_id and not placeholder:
                raise Conflict(f"the {spec.provider} account that consented is not the one this connection "
                               "is for; reconnect it as a new connection", field="external_id")
            return existing
        if not external_id:
            return None
        async with self.db.system() as session:
            owner = await session.scalar(select(Connection).where(
                Connection.provider == spec.provider, Connection.external_id == external_id))
        if owner is not None and owner.workspace_id != pending.workspace_id:
            raise Conflict(f"this {spec.provider} account is already connected to another workspace",
                           field="external_id")
        return owner

    async def _row(self, session: Any, connection_id: str) -> Connection:
        row = await session.scalar(select(Connection).where(Connection.id == connection_id))
        if row is None:
            raise NotFound(f"connection {connection_id} was deleted during authorization", field="connection_id")
        assert isinstance(row, Connection)
        return row


def _external_id(spec: ProviderSpec, tokens: TokenSet, pending: PendingAuthorization) -> str | None:
    field = spec.external_id_field
    if field and field in pending.url_vars:
        return str(pending.url_vars[field])
    value = tokens.raw.get(field) if field else None
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)[:255]
    return pending.connection_hint


def _split(scope: str, separator: str) -> list[str]:
    return [s for s in (part.strip() for part in scope.split(separator)) if s]


def _union(first: Sequence[str], second: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    if isinstance(scopes, str):
        raise InvalidRequest("scopes must be a list of scope names, not one string", field="scopes")
    for scope in scopes:
        if not isinstance(scope, str) or not _SCOPE_RE.match(scope) or "," in scope:
            raise InvalidRequest(f"scope {str(scope)[:60]!r} is not a scope name", field="scopes")
    return _union([], scopes)


def _check_redirect_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise InvalidRequest("redirect_uri must be an absolute http(s) URL without a fragment",
                             field="redirect_uri")


def _check_url_vars(spec: ProviderSpec, given: Mapping[str, str]) -> None:
    unknown = set(given) - set(spec.url_vars)
    if unknown:
        raise InvalidRequest(f"{spec.key} takes no URL variable {sorted(unknown)[0]!r}", field="url_vars")
    for var, pattern in spec.url_vars.items():
        value = given.get(var)
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise InvalidRequest(f"{spec.key} needs url_vars[{var!r}] matching {pattern}", field=f"url_vars.{var}")
