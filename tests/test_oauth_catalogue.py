"""Provider differences are data: each catalogue entry produces the wire requests API_FACTS describes."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ionflux.core.oauth import CATALOGUE, HttpReply, OAuthFlow
from ionflux.core.platform import Platform

REDIRECT = "https://app.ionflux.test/oauth/callback"


@dataclass
class Sent:
    url: str
    headers: dict[str, str]
    form: dict[str, str] | None
    json_body: dict[str, Any] | None


@dataclass
class RecordingTransport:
    """Answers token calls with scripted JSON and keeps what was sent."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    async def post(self, url: str, *, headers: Mapping[str, str], form: Mapping[str, str] | None,
                   json_body: Mapping[str, Any] | None) -> HttpReply:
        self.sent.append(Sent(url, dict(headers), dict(form) if form is not None else None,
                              dict(json_body) if json_body is not None else None))
        return HttpReply(200, json.dumps(self.replies.pop(0) if self.replies else {}).encode())


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


async def setup(platform: Platform, provider: str, secrets: dict[str, str]) -> tuple[str, OAuthFlow,
                                                                                      RecordingTransport, Clock]:
    ws = (await platform.workspaces.create("acme")).id
    await platform.vault.put(ws, provider, secrets)
    transport, clock = RecordingTransport(), Clock()
    return ws, OAuthFlow(platform.db, platform.vault, transport=transport, clock=clock), transport, clock


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


async def test_shopify_uses_json_bodies_per_shop_hosts_and_expiring_offline_tokens(platform: Platform) -> None:
    ws, flow, transport, clock = await setup(platform, "shopify", {"client_id": "key", "client_secret": "shpss_1"})
    url = await flow.start(ws, "shopify", scopes=["read_orders", "write_orders"], redirect_uri=REDIRECT,
                           url_vars={"shop": "acme.myshopify.com"})
    assert "response_type" not in parse_qs(urlsplit(url).query)
    transport.replies.append({"access_token": "shpat_1", "scope": "read_orders,write_orders", "expires_in": 3600,
                              "refresh_token": "shprt_1", "refresh_token_expires_in": 7776000})
    connection = await flow.complete("shopify", {"code": "c0de", "state": state_of(url),
                                                 "shop": "acme.myshopify.com"})
    exchange = transport.sent[-1]
    assert exchange.url == "https://acme.myshopify.com/admin/oauth/access_token"
    assert exchange.json_body == {"client_id": "key", "client_secret": "shpss_1", "code": "c0de", "expiring": 1}
    assert (connection.external_id, connection.scopes) == ("acme.myshopify.com", ["read_orders", "write_orders"])

    clock.now += timedelta(minutes=56)
    transport.replies.append({"access_token": "shpat_2", "expires_in": 3600, "refresh_token": "shprt_2",
                              "refresh_token_expires_in": 7776000, "scope": "read_orders,write_orders"})
    assert await flow.access_token(ws, connection.id) == "shpat_2"
    assert transport.sent[-1].json_body == {"client_id": "key", "client_secret": "shpss_1",
                                            "grant_type": "refresh_token", "refresh_token": "shprt_1"}
    assert (await platform.vault.get(ws, "shopify", connection.credential_name))["refresh_token"] == "shprt_2"


async def test_tiktok_web_sends_client_key_in_a_form_and_keys_connections_by_open_id(platform: Platform) -> None:
    ws, flow, transport, _ = await setup(platform, "tiktok", {"client_key": "ck", "client_secret": "cs_123456"})
    url = await flow.start(ws, "tiktok", scopes=["user.info.basic"], redirect_uri=REDIRECT)
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("www.tiktok.com", "/v2/auth/authorize/")
    assert "code_challenge" not in parse_qs(parts.query)  # web login: no PKCE
    transport.replies.append({"access_token": "act.1", "expires_in": 7200, "open_id": "oid-9",
                              "refresh_token": "rft.1", "refresh_expires_in": 15552000,
                              "scope": "user.info.basic", "token_type": "Bearer"})
    connection = await flow.complete("tiktok", {"code": "c0de", "state": state_of(url)})
    sent = transport.sent[-1]
    assert sent.url == "https://open.tiktokapis.com/v2/oauth/token/"
    assert sent.form == {"client_key": "ck", "client_secret": "cs_123456", "code": "c0de",
                         "grant_type": "authorization_code", "redirect_uri": REDIRECT}
    assert connection.external_id == "oid-9"


async def test_stripe_connect_authenticates_with_the_secret_key_and_deauthorizes_by_account(
        platform: Platform) -> None:
    ws, flow, transport, _ = await setup(platform, "stripe", {"client_id": "ca_1", "secret_key": "sk_test_123"})
    url = await flow.start(ws, "stripe", scopes=["read_write"], redirect_uri=REDIRECT)
    assert parse_qs(urlsplit(url).query)["client_id"] == ["ca_1"]
    transport.replies.append({"access_token": "sk_acct", "refresh_token": "rt_1", "stripe_user_id": "acct_7",
                              "scope": "read_write", "livemode": False, "token_type": "bearer"})
    connection = await flow.complete("stripe", {"code": "ac_1", "state": state_of(url)})
    sent = transport.sent[-1]
    assert sent.headers["Authorization"] == "Basic " + base64.b64encode(b"sk_test_123:").decode()
    assert sent.form == {"code": "ac_1", "grant_type": "authorization_code"}
    assert connection.external_id == "acct_7" and connection.token_expires_at is None
    assert await flow.access_token(ws, connection.id) == "sk_acct"  # Connect tokens do not expire
    await flow.revoke(ws, connection.id)
    assert transport.sent[-1].url == "https://connect.stripe.com/oauth/deauthorize"
    assert transport.sent[-1].form == {"client_id": "ca_1", "stripe_user_id": "acct_7"}


@pytest.mark.parametrize("key", sorted(CATALOGUE))
async def test_every_catalogue_entry_builds_an_authorize_url(platform: Platform, key: str) -> None:
    spec = CATALOGUE[key]
    secrets = {spec.client_id_field: "cid", spec.client_secret_field: "csecret"}
    ws, flow, _, _ = await setup(platform, spec.provider, secrets)
    url_vars = {"shop": "acme.myshopify.com"} if spec.url_vars else None
    url = await flow.start(ws, key, scopes=["s1", "s2"], redirect_uri=REDIRECT, url_vars=url_vars)
    query = parse_qs(urlsplit(url).query)
    assert query[spec.client_id_param] == ["cid"]
    assert query[spec.scope_param] == [spec.scope_separator.join(["s1", "s2"])]
    assert query["redirect_uri"] == [REDIRECT]
    assert ("code_challenge" in query) == (spec.pkce is not None)
