"""Talking to a provider's token and revocation endpoints (RFC 6749 §4.1.3, §6; RFC 7009).

Requests are built from catalogue data (auth style, body encoding, parameter names); nothing here is
provider-specific. The HTTP call goes through a one-method seam (`TokenTransport`) so the provider HTTP
toolkit (the default, `ProviderClientTransport`) or a test double sits behind it. Only connection
failures are retried: a refresh request that reached the provider may have rotated the refresh token,
so sending it again is unsafe.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote_plus

import httpx
from prometheus_client import CollectorRegistry

from ionflux.core.errors import IonfluxError, ProviderUnavailable
from ionflux.core.http import ProviderClient, ProviderProfile, Timeouts
from ionflux.core.oauth.catalogue import BodyEncoding, ProviderSpec, TokenAuth
from ionflux.core.oauth.errors import TokenEndpointError, redact

log = logging.getLogger("ionflux.oauth")


@dataclass(frozen=True)
class ClientCredentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=[redacted])"


@dataclass(frozen=True)
class TokenSet:
    """A token endpoint's answer; `raw` keeps the non-secret extra fields (account ids, scope, …)."""

    access_token: str
    refresh_token: str | None
    expires_in: int | None
    refresh_expires_in: int | None
    scope: str | None
    raw: Mapping[str, Any]

    def __repr__(self) -> str:
        return (f"TokenSet(expires_in={self.expires_in}, refresh_token={'yes' if self.refresh_token else 'no'}, "
                f"scope={self.scope!r})")


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes


class TokenTransport(Protocol):
    async def post(self, url: str, *, headers: Mapping[str, str], form: Mapping[str, str] | None,
                   json_body: Mapping[str, Any] | None) -> HttpReply: ...


class ProviderClientTransport:
    """The default transport: the provider HTTP toolkit (timeouts, circuit breaker, metrics, redaction).

    A POST is never retried by the toolkit once sent (only connections never made), which is what a
    refresh with a rotating token needs. Its error for a 4xx/5xx is turned back into the reply, so the
    RFC 6749 `error` code in the body (invalid_grant, invalid_client) reaches the flow.
    """

    def __init__(self, client: ProviderClient | None = None, *, registry: CollectorRegistry | None = None) -> None:
        self._own = client is None
        self.client = client or ProviderClient(
            ProviderProfile(name="oauth", base_url="https://oauth.invalid", timeouts=Timeouts(total=20.0)),
            registry=registry,
        )

    async def post(self, url: str, *, headers: Mapping[str, str], form: Mapping[str, str] | None,
                   json_body: Mapping[str, Any] | None) -> HttpReply:
        try:
            response = await self.client.request(
                "POST", url, account=httpx.URL(url).host, headers=dict(headers),
                data=dict(form) if form is not None else None, json=json_body,
            )
        except IonfluxError as exc:
            status = exc.details.get("status")
            if not isinstance(status, int):
                raise  # never answered: ProviderUnavailable from the toolkit
            return HttpReply(status, str(exc.details.get("provider_body", "")).encode())
        return HttpReply(response.status_code, response.content)

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()


class TokenEndpoint:
    def __init__(self, transport: TokenTransport) -> None:
        self.transport = transport

    async def exchange_code(self, spec: ProviderSpec, creds: ClientCredentials, *, url: str, code: str,
                            redirect_uri: str, verifier: str | None) -> TokenSet:
        params: dict[str, Any] = {"code": code, **spec.token_params}
        if spec.send_grant_type_on_code:
            params["grant_type"] = "authorization_code"
        if spec.send_redirect_uri_on_token:
            params["redirect_uri"] = redirect_uri
        if verifier:
            params["code_verifier"] = verifier
        body = await self._post(spec, url, spec.token_auth, spec.token_encoding, creds, params,
                                (code, verifier, creds.client_secret))
        return _token_set(spec, body)

    async def refresh(self, spec: ProviderSpec, creds: ClientCredentials, *, url: str,
                      refresh_token: str) -> TokenSet:
        params = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        body = await self._post(spec, url, spec.token_auth, spec.token_encoding, creds, params,
                                (refresh_token, creds.client_secret))
        return _token_set(spec, body)

    async def revoke(self, spec: ProviderSpec, creds: ClientCredentials, *, url: str, token: str,
                     external_id: str) -> None:
        assert spec.revoke is not None
        values = {"token": token, "client_id": creds.client_id, "client_secret": creds.client_secret,
                  "external_id": external_id}
        params = {name: _fill(template, values) for name, template in spec.revoke.params.items()}
        await self._post(spec, url, spec.revoke.auth, spec.revoke.encoding, creds, params,
                         (token, creds.client_secret), want_token=False)

    async def _post(self, spec: ProviderSpec, url: str, auth: TokenAuth | None, encoding: BodyEncoding,
                    creds: ClientCredentials, params: dict[str, Any], secrets: tuple[str | None, ...],
                    *, want_token: bool = True) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if auth == "client_secret_post":
            params = {spec.client_id_param: creds.client_id, "client_secret": creds.client_secret, **params}
        elif auth == "client_secret_basic":
            headers["Authorization"] = _basic(quote_plus(creds.client_id), quote_plus(creds.client_secret))
        elif auth == "secret_key_basic":
            headers["Authorization"] = _basic(creds.client_secret, "")
        try:
            if encoding == "json":
                reply = await self.transport.post(url, headers=headers, form=None, json_body=params)
            else:
                form = {k: str(v) for k, v in params.items()}
                reply = await self.transport.post(url, headers=headers, form=form, json_body=None)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"could not reach the {spec.provider} OAuth endpoint ({type(exc).__name__})",
                details={"provider": spec.provider},
            ) from None
        body = _json_object(reply.body)
        failed = reply.status >= 400 or (want_token and "access_token" not in body)
        if not failed:
            return body
        error = body.get("error") if isinstance(body.get("error"), str) else None
        described = body.get("error_description") or body.get("message") or ""
        text = redact(str(described)[:300], (*secrets, creds.client_id))
        if reply.status < 400 and error is None:
            error = "invalid_response"
            text = "the answer has no access_token"
        log.warning("oauth endpoint refused", extra={"provider": spec.provider, "status": reply.status,
                                                     "oauth_error": error})
        raise TokenEndpointError(
            f"{spec.provider} OAuth endpoint answered {reply.status} {error or 'error'}"
            + (f": {text}" if text else ""),
            status=reply.status, error=error,
        )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _fill(template: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _token_set(spec: ProviderSpec, body: dict[str, Any]) -> TokenSet:
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenEndpointError(f"{spec.provider} token endpoint returned no access_token", status=200,
                                 error="invalid_response")
    refresh = body.get("refresh_token")
    scope = body.get("scope")
    refresh_ttl = body.get(spec.refresh_expires_field) if spec.refresh_expires_field else None
    secret_fields = {"access_token", "refresh_token", "id_token"}
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=_int(body.get("expires_in")),
        refresh_expires_in=_int(refresh_ttl),
        scope=scope if isinstance(scope, str) else None,
        raw={k: v for k, v in body.items() if k not in secret_fields},
    )
