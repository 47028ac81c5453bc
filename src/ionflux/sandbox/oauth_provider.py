"""A strict OAuth 2.0 authorization server on loopback: RFC 6749 code grant, RFC 7636 PKCE, RFC 7009.

Consent is automatic (no login page): GET the authorize URL and the 302 `Location` carries the code,
so a test follows one redirect. Everything a real provider refuses is refused here with the RFC
error body: wrong client secret (401 invalid_client), reused or expired code, wrong redirect_uri,
wrong PKCE verifier, reused rotated refresh token (400 invalid_grant). Provider differences (param
names, scope separator, hex PKCE, paths, account field) come from an `ProviderSpec` via `for_spec`.

Simulator-only authorize parameters: `sim_account` picks the consenting account, `sim_deny=1` makes
the user decline. `stats` counts what happened (e.g. refreshes, for single-flight tests). Run it with
`SimulatorServer(sim.app)`, whose `faults` script outages and latency like for any simulator.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ionflux.core.oauth.catalogue import ProviderSpec


@dataclass
class SimulatorConfig:
    authorize_path: str = "/oauth/authorize"
    token_path: str = "/oauth/token"  # noqa: S105 (a path)
    revoke_path: str = "/oauth/revoke"
    me_path: str = "/oauth/me"
    client_id_param: str = "client_id"
    scope_separator: str = " "
    pkce_encoding: Literal["base64url", "hex"] = "base64url"
    require_pkce: bool = False
    access_token_ttl: int | None = 3600  # None: tokens that never expire (no expires_in)
    refresh_token_ttl: int | None = None
    refresh_expires_field: str | None = None  # e.g. TikTok's refresh_expires_in
    issue_refresh_tokens: bool = True
    rotate_refresh_tokens: bool = True
    code_ttl: int = 60
    account_field: str = "account_id"
    default_account: str = "acct-1"
    refresh_latency: float = 0.0  # seconds the refresh grant takes, to widen races in tests

    @classmethod
    def for_spec(cls, spec: ProviderSpec, **overrides: Any) -> SimulatorConfig:
        """Behave like `spec` says its provider does (paths, param names, separator, PKCE variant)."""
        config = cls(
            authorize_path=urlsplit(spec.authorize_url).path, token_path=urlsplit(spec.token_url).path,
            client_id_param=spec.client_id_param, scope_separator=spec.scope_separator,
            pkce_encoding=spec.pkce.encoding if spec.pkce else "base64url", require_pkce=spec.pkce is not None,
            refresh_expires_field=spec.refresh_expires_field, account_field=spec.external_id_field or "account_id",
        )
        if spec.revoke is not None:
            config.revoke_path = urlsplit(spec.revoke.url).path
        return replace(config, **overrides)


@dataclass
class _Client:
    secret: str
    redirect_uris: set[str]


@dataclass
class _Grant:
    client_id: str
    account: str
    scopes: list[str]
    revoked: bool = False


@dataclass
class _Code:
    grant: _Grant
    redirect_uri: str | None
    challenge: str | None
    issued_at: float
    used: bool = False


@dataclass
class _Token:
    grant: _Grant
    expires_at: float | None
    active: bool = True


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str, *, basic: bool = False) -> None:
        super().__init__(description)
        self.status, self.error, self.description, self.basic = status, error, description, basic


class OAuthProviderSimulator:
    def __init__(self, config: SimulatorConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config or SimulatorConfig()
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self._clients: dict[str, _Client] = {}
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        c = self.config
        self.app = Starlette(routes=[
            Route(c.authorize_path, self._authorize, methods=["GET"]),
            Route(c.token_path, self._token, methods=["POST"]),
            Route(c.revoke_path, self._revoke, methods=["POST"]),
            Route(c.me_path, self._me, methods=["GET"]),
        ])

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        self._clients[client_id] = _Client(client_secret, set(redirect_uris))

    def token_is_active(self, access_token: str) -> bool:
        token = self._access.get(access_token)
        return token is not None and self._live(token)

    def _live(self, token: _Token) -> bool:
        expired = token.expires_at is not None and token.expires_at <= self.clock()
        return token.active and not token.grant.revoked and not expired

    async def _authorize(self, request: Request) -> Response:
        q, c = request.query_params, self.config
        client = self._clients.get(q.get(c.client_id_param, ""))
        redirect_uri = q.get("redirect_uri", "")
        # RFC 6749 §4.1.2.1: never redirect to an unverified redirect_uri; tell the user instead.
        if client is None:
            return _error(400, "invalid_request", f"unknown {c.client_id_param}")
        if redirect_uri not in client.redirect_uris:
            return _error(400, "invalid_request", "redirect_uri is not registered for this client")
        state = q.get("state")

        def back(**params: str) -> Response:
            if state is not None:
                params["state"] = state
            joiner = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(redirect_uri + joiner + urlencode(params), status_code=302)

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type")
        challenge, method = q.get("code_challenge"), q.get("code_challenge_method")
        if challenge is None and c.require_pkce:
            return back(error="invalid_request", error_description="code_challenge required")
        if challenge is not None and method != "S256":
            return back(error="invalid_request", error_description="code_challenge_method must be S256")
        if q.get("sim_deny"):
            return back(error="access_denied", error_description="the user declined")
        scopes = [s for s in q.get("scope", "").split(c.scope_separator) if s]
        grant = _Grant(q[c.client_id_param], q.get("sim_account") or c.default_account, scopes)
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(grant, q.get("redirect_uri"), challenge, self.clock())
        self.stats["authorizations"] += 1
        return back(code=code)

    async def _token(self, request: Request) -> Response:
        try:
            params, client_id, _ = await self._authenticate(request)
            grant_type = params.get("grant_type")
            if grant_type == "authorization_code":
                body = self._exchange(params, client_id)
            elif grant_type == "refresh_token":
                self.stats["refresh_requests"] += 1
                if self.config.refresh_latency:
                    await asyncio.sleep(self.config.refresh_latency)  # simulated provider latency
                body = self._refresh_grant(params, client_id)
            else:
                raise OAuthError(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
        except OAuthError as exc:
            self.stats["refused"] += 1
            return _error(exc.status, exc.error, exc.description, basic=exc.basic)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _exchange(self, params: dict[str, str], client_id: str) -> dict[str, Any]:
        code = self._codes.get(params.get("code", ""))
        if code is None or code.grant.client_id != client_id:
            raise OAuthError(400, "invalid_grant", "unknown authorization code")
        if code.used:  # RFC 6749 §4.1.2: a reused code also revokes what it issued
            code.grant.revoked = True
            raise OAuthError(400, "invalid_grant", "authorization code already used")
        code.used = True
        if self.clock() - code.issued_at > self.config.code_ttl:
            raise OAuthError(400, "invalid_grant", "authorization code expired")
        if code.redirect_uri is not None and params.get("redirect_uri") != code.redirect_uri:
            raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization request")
        if code.challenge is not None:
            verifier = params.get("code_verifier", "")
            if not 43 <= len(verifier) <= 128:
                raise OAuthError(400, "invalid_grant", "code_verifier missing or malformed")
            if not hmac.compare_digest(self._challenge(verifier), code.challenge):
                raise OAuthError(400, "invalid_grant", "code_verifier does not match the code_challenge")
        self.stats["code_exchanges"] += 1
        return self._issue(code.grant, with_refresh=self.config.issue_refresh_tokens)

    def _refresh_grant(self, params: dict[str, str], client_id: str) -> dict[str, Any]:
        token = self._refresh.get(params.get("refresh_token", ""))
        if token is None or token.grant.client_id != client_id or not self._live(token):
            raise OAuthError(400, "invalid_grant", "refresh token is invalid, expired, rotated or revoked")
        if self.config.rotate_refresh_tokens:
            token.active = False
        self.stats["refreshes"] += 1
        return self._issue(token.grant, with_refresh=self.config.rotate_refresh_tokens)

    def _issue(self, grant: _Grant, *, with_refresh: bool) -> dict[str, Any]:
        c, now = self.config, self.clock()
        access = "at-" + secrets.token_urlsafe(24)
        self._access[access] = _Token(grant, now + c.access_token_ttl if c.access_token_ttl is not None else None)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                "scope": c.scope_separator.join(grant.scopes), c.account_field: grant.account}
        if c.access_token_ttl is not None:
            body["expires_in"] = c.access_token_ttl
        if with_refresh:
            refresh = "rt-" + secrets.token_urlsafe(24)
            ttl = c.refresh_token_ttl
            self._refresh[refresh] = _Token(grant, now + ttl if ttl is not None else None)
            body["refresh_token"] = refresh
            if c.refresh_expires_field and ttl is not None:
                body[c.refresh_expires_field] = ttl
        return body

    async def _revoke(self, request: Request) -> Response:
        try:
            params, client_id, _ = await self._authenticate(request)
        except OAuthError as exc:
            return _error(exc.status, exc.error, exc.description, basic=exc.basic)
        value = params.get("token")
        if not value:
            return _error(400, "invalid_request", "token is required")
        token = self._refresh.get(value) or self._access.get(value)
        # RFC 7009 §2.2: an unknown or already invalid token still gets 200.
        if token is not None and token.grant.client_id == client_id:
            if value in self._refresh:
                token.grant.revoked = True  # a refresh token takes its whole grant down
            token.active = False
            self.stats["revocations"] += 1
        return Response(status_code=200)

    async def _me(self, request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self._access.get(value) if scheme.lower() == "bearer" else None
        if token is None or not self._live(token):
            return _error(401, "invalid_token", "the access token is invalid, expired or revoked")
        return JSONResponse({self.config.account_field: token.grant.account, "scopes": token.grant.scopes})

    async def _authenticate(self, request: Request) -> tuple[dict[str, str], str, bool]:
        """Body params, and the client they authenticate (HTTP Basic or body, never both)."""
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            loaded = json.loads(raw or b"{}")
            params = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        else:
            params = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        scheme, _, blob = request.headers.get("authorization", "").partition(" ")
        basic = scheme.lower() == "basic"
        id_param = self.config.client_id_param
        if basic and "client_secret" in params:
            raise OAuthError(400, "invalid_request", "use one client authentication method, not two")
        if basic:
            try:
                user, _, password = base64.b64decode(blob).decode().partition(":")
            except ValueError:
                raise OAuthError(401, "invalid_client", "malformed Basic credentials", basic=True) from None
            client_id, secret = unquote_plus(user), unquote_plus(password)
        else:
            client_id, secret = params.get(id_param, ""), params.get("client_secret", "")
        client = self._clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            raise OAuthError(401, "invalid_client", "client authentication failed", basic=basic)
        return params, client_id, basic

    def _challenge(self, verifier: str) -> str:
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        if self.config.pkce_encoding == "hex":
            return digest.hex()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _error(status: int, error: str, description: str, *, basic: bool = False) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401 and basic:
        headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)

