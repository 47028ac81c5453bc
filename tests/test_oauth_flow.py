"""OAuth authorization-code flow against the loopback provider simulator: what a connecting user sees."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from ionflux.core.errors import Conflict, InvalidRequest
from ionflux.core.models import Connection, OutboxEvent
from ionflux.core.oauth import (
    CATALOGUE,
    PKCE_HEX_S256,
    PKCE_S256,
    AuthorizationDenied,
    OAuthFlow,
    OAuthStateError,
    ReauthorizationRequired,
)
from ionflux.core.oauth.models import OAuthState
from ionflux.core.oauth.pkce import challenge
from ionflux.core.platform import Platform
from ionflux.sandbox import SimulatorServer
from ionflux.sandbox.oauth_provider import OAuthProviderSimulator, SimulatorConfig

REDIRECT = "https://app.ionflux.test/oauth/callback"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class OAuthEnv:
    platform: Platform
    sim: OAuthProviderSimulator
    server: SimulatorServer
    flow: OAuthFlow
    clock: Clock
    ws: str
    key: str = "generic"

    async def authorize(self, url: str, **sim_params: str) -> dict[str, str]:
        """Follow the authorize URL like a browser that consents; return the callback's query."""
        if sim_params:
            url += "&" + "&".join(f"{k}={v}" for k, v in sim_params.items())
        async with httpx.AsyncClient() as browser:
            reply = await browser.get(url)
        assert reply.status_code == 302, reply.text
        location = reply.headers["location"]
        assert location.startswith(REDIRECT)
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def connect(self, scopes: list[str], **start: Any) -> Connection:
        url = await self.flow.start(self.ws, self.key, scopes=scopes, redirect_uri=REDIRECT, **start)
        return await self.flow.complete(self.key, await self.authorize(url))


@asynccontextmanager
async def make_env(platform: Platform, config: SimulatorConfig, key: str = "generic") -> AsyncIterator[OAuthEnv]:
    sim = OAuthProviderSimulator(config)
    sim.register_client("sim-client", "sim-secret-0123456789", [REDIRECT])
    created = await platform.workspaces.create("acme")
    spec = CATALOGUE[key]
    await platform.vault.put(created.id, spec.provider, {spec.client_id_field: "sim-client",
                                                          spec.client_secret_field: "sim-secret-0123456789"})
    clock = Clock()
    async with SimulatorServer(sim.app, name="oauth") as server:
        flow = OAuthFlow(platform.db, platform.vault, providers={key: spec.at(server.base_url)}, clock=clock)
        yield OAuthEnv(platform, sim, server, flow, clock, created.id, key)
        await flow.aclose()


@pytest.fixture
async def env(platform: Platform) -> AsyncIterator[OAuthEnv]:
    async with make_env(platform, SimulatorConfig()) as value:
        yield value


async def events(platform: Platform, type_: str) -> list[OutboxEvent]:
    async with platform.db.system() as session:
        return list((await session.scalars(select(OutboxEvent).where(OutboxEvent.type == type_))).all())


async def test_full_flow_stores_tokens_in_the_vault_and_activates_the_connection(env: OAuthEnv) -> None:
    url = await env.flow.start(env.ws, "generic", scopes=["orders.read", "orders.write"], redirect_uri=REDIRECT,
                               user_id="user-7")
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["orders.read orders.write"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 43

    callback = await env.authorize(url)
    assert callback["state"] == query["state"][0]
    connection = await env.flow.complete("generic", callback, workspace_id=env.ws, user_id="user-7")

    assert connection.status == "active"
    assert connection.scopes == ["orders.read", "orders.write"]
    assert connection.external_id == "acct-1"
    bundle = await env.platform.vault.get(env.ws, "generic", connection.credential_name)
    assert bundle["access_token"].startswith("at-") and bundle["refresh_token"].startswith("rt-")
    assert bundle["access_token"] not in repr(connection.meta) + repr(connection.scopes)
    assert env.sim.token_is_active(bundle["access_token"])
    assert await env.flow.access_token(env.ws, connection.id) == bundle["access_token"]
    assert env.sim.stats["refresh_requests"] == 0
    [event] = await events(env.platform, "platform.generic.events.connections.authorized")
    assert event.data["connection_id"] == connection.id and event.data["new"] is True


async def test_state_is_single_use_even_under_concurrent_callbacks(env: OAuthEnv) -> None:
    url = await env.flow.start(env.ws, "generic", scopes=["a"], redirect_uri=REDIRECT)
    callback = await env.authorize(url)
    results = await asyncio.gather(*(env.flow.complete("generic", callback) for _ in range(5)),
                                   return_exceptions=True)
    assert sum(isinstance(r, Connection) for r in results) == 1
    refused = [r for r in results if not isinstance(r, Connection)]
    assert all(isinstance(r, OAuthStateError) and r.problem == "used" for r in refused), refused
    assert env.sim.stats["code_exchanges"] == 1


async def test_expired_state_is_refused_before_the_code_is_redeemed(env: OAuthEnv) -> None:
    url = await env.flow.start(env.ws, "generic", scopes=["a"], redirect_uri=REDIRECT)
    callback = await env.authorize(url)
    env.clock.now += timedelta(minutes=10, seconds=1)
    with pytest.raises(OAuthStateError) as caught:
        await env.flow.complete("generic", callback)
    assert caught.value.problem == "expired"
    assert env.sim.stats["code_exchanges"] == 0


async def test_state_from_another_workspace_is_refused_and_not_burned(env: OAuthEnv) -> None:
    other = await env.platform.workspaces.create("globex")
    url = await env.flow.start(env.ws, "generic", scopes=["a"], redirect_uri=REDIRECT, user_id="u1")
    callback = await env.authorize(url)
    with pytest.raises(OAuthStateError) as caught:
        await env.flow.complete("generic", callback, workspace_id=other.id)
    assert caught.value.problem == "mismatch"
    with pytest.raises(OAuthStateError):
        await env.flow.complete("generic", callback, workspace_id=env.ws, user_id="someone-else")
    with pytest.raises(OAuthStateError) as unknown:
        await env.flow.complete("generic", {**callback, "state": callback["state"][:-2] + "xx"})
    assert unknown.value.problem == "unknown"
    connection = await env.flow.complete("generic", callback, workspace_id=env.ws, user_id="u1")
    assert connection.workspace_id == env.ws


async def test_state_is_stored_only_as_a_hash(env: OAuthEnv) -> None:
    url = await env.flow.start(env.ws, "generic", scopes=["a"], redirect_uri=REDIRECT)
    state = parse_qs(urlsplit(url).query)["state"][0]
    async with env.platform.db.system() as session:
        [row] = (await session.scalars(select(OAuthState))).all()
    assert row.state_hash == hashlib.sha256(state.encode()).hexdigest()
    assert state not in repr([getattr(row, c.key) for c in OAuthState.__table__.columns])


def test_pkce_challenges_match_rfc7636_and_the_hex_variant() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 appendix B
    assert challenge(verifier, PKCE_S256) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    # The hex variant is the same SHA-256, written as lowercase hex (derived from the RFC value by hand).
    expected_hex = base64.urlsafe_b64decode("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM=").hex()
    assert expected_hex == "13d31e961a1ad8ec2f16b10c4c982e0876a878ad6df144566ee1894acb70f9c3"
    assert challenge(verifier, PKCE_HEX_S256) == expected_hex


async def test_simulator_refuses_what_a_real_provider_refuses(env: OAuthEnv) -> None:
    verifier = "v" * 50
    base = env.server.base_url
    auth = ("sim-client", "sim-secret-0123456789")

    async def code(redirect: str = REDIRECT) -> str:
        params = {"client_id": "sim-client", "redirect_uri": redirect, "response_type": "code", "state": "s",
                  "code_challenge": challenge(verifier, PKCE_S256), "code_challenge_method": "S256"}
        async with httpx.AsyncClient() as c:
            reply = await c.get(base + "/oauth/authorize", params=params)
        return parse_qs(urlsplit(reply.headers["location"]).query)["code"][0]

    async def token(data: dict[str, str], basic: tuple[str, str] = auth) -> httpx.Response:
        async with httpx.AsyncClient() as c:
            return await c.post(base + "/oauth/token", data=data, auth=basic)

    exchange = {"grant_type": "authorization_code", "redirect_uri": REDIRECT, "code_verifier": verifier}
    wrong_verifier = await token({**exchange, "code": await code(), "code_verifier": "w" * 50})
    assert (wrong_verifier.status_code, wrong_verifier.json()["error"]) == (400, "invalid_grant")
    wrong_redirect = await token({**exchange, "code": await code(), "redirect_uri": REDIRECT + "x"})
    assert (wrong_redirect.status_code, wrong_redirect.json()["error"]) == (400, "invalid_grant")
    bad_secret = await token({**exchange, "code": await code()}, basic=("sim-client", "nope"))
    assert (bad_secret.status_code, bad_secret.json()["error"]) == (401, "invalid_client")
    assert "basic" in bad_secret.headers["www-authenticate"].lower()
    good = await code()
    assert (await token({**exchange, "code": good})).status_code == 200
    reused = await token({**exchange, "code": good})
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    async with httpx.AsyncClient() as c:
        unregistered = await c.get(base + "/oauth/authorize", params={
            "client_id": "sim-client", "redirect_uri": "https://evil.test/cb", "response_type": "code"})
    assert unregistered.status_code == 400 and "location" not in unregistered.headers


async def test_tiktok_desktop_flow_uses_client_key_commas_and_hex_pkce(platform: Platform) -> None:
    spec = CATALOGUE["tiktok_desktop"]
    async with make_env(platform, SimulatorConfig.for_spec(spec), key="tiktok_desktop") as env:
        url = await env.flow.start(env.ws, "tiktok_desktop", scopes=["user.info.basic", "video.list"],
                                   redirect_uri=REDIRECT)
        query = parse_qs(urlsplit(url).query)
        assert query["client_key"] == ["sim-client"] and "client_id" not in query
        assert query["scope"] == ["user.info.basic,video.list"]
        assert len(query["code_challenge"][0]) == 64  # hex, not base64url
        connection = await env.flow.complete("tiktok", await env.authorize(url, sim_account="open-42"))
        assert (connection.provider, connection.external_id) == ("tiktok", "open-42")
        assert connection.scopes == ["user.info.basic", "video.list"]


async def test_more_scopes_later_keep_the_same_connection(env: OAuthEnv) -> None:
    first = await env.connect(["orders.read"])
    url = await env.flow.start(env.ws, "generic", scopes=["orders.write"], redirect_uri=REDIRECT,
                               connection_id=first.id)
    assert parse_qs(urlsplit(url).query)["scope"] == ["orders.read orders.write"]
    again = await env.flow.complete("generic", await env.authorize(url))
    assert again.id == first.id and again.scopes == ["orders.read", "orders.write"]
    async with env.platform.db.tenant(env.ws) as session:
        rows = (await session.scalars(select(Connection))).all()
    assert [r.id for r in rows] == [first.id]
    with pytest.raises(Conflict):  # consenting with a different account is not "more scopes"
        url = await env.flow.start(env.ws, "generic", scopes=["x"], redirect_uri=REDIRECT, connection_id=first.id)
        await env.flow.complete("generic", await env.authorize(url, sim_account="acct-2"))


async def test_the_same_account_cannot_join_two_workspaces(env: OAuthEnv) -> None:
    await env.connect(["a"])
    other = await env.platform.workspaces.create("globex")
    await env.platform.vault.put(other.id, "generic", {"client_id": "sim-client",
                                                       "client_secret": "sim-secret-0123456789"})
    url = await env.flow.start(other.id, "generic", scopes=["a"], redirect_uri=REDIRECT)
    with pytest.raises(Conflict):
        await env.flow.complete("generic", await env.authorize(url))


async def test_a_declined_consent_is_reported_and_closes_the_state(env: OAuthEnv) -> None:
    url = await env.flow.start(env.ws, "generic", scopes=["a"], redirect_uri=REDIRECT)
    callback = await env.authorize(url, sim_deny="1")
    with pytest.raises(AuthorizationDenied, match="access_denied"):
        await env.flow.complete("generic", callback)
    with pytest.raises(OAuthStateError) as caught:
        await env.flow.complete("generic", {**callback, "error": "", "code": "forged"})
    assert caught.value.problem == "used"


async def test_revocation_calls_the_provider_deletes_tokens_and_marks_revoked(env: OAuthEnv) -> None:
    connection = await env.connect(["a"])
    bundle = await env.platform.vault.get(env.ws, "generic", connection.credential_name)
    revoked = await env.flow.revoke(env.ws, connection.id)
    assert revoked.status == "revoked" and revoked.id == connection.id
    assert env.sim.stats["revocations"] == 1
    assert not env.sim.token_is_active(bundle["access_token"])
    assert all(c.name != connection.credential_name for c in await env.platform.vault.list(env.ws))
    with pytest.raises(ReauthorizationRequired):
        await env.flow.access_token(env.ws, connection.id)
    [event] = await events(env.platform, "platform.generic.events.connections.revoked")
    assert event.data == {"connection_id": connection.id, "external_id": "acct-1", "provider_revoked": True}


async def test_shopify_urls_come_from_the_shop_and_the_callback_shop_must_match(env: OAuthEnv) -> None:
    await env.platform.vault.put(env.ws, "shopify", {"client_id": "shp-key", "client_secret": "shp-secret-123456"})
    with pytest.raises(InvalidRequest):
        await env.flow.start(env.ws, "shopify", scopes=["read_orders"], redirect_uri=REDIRECT,
                             url_vars={"shop": "evil.example.com"})
    url = await env.flow.start(env.ws, "shopify", scopes=["read_orders", "read_products"], redirect_uri=REDIRECT,
                               url_vars={"shop": "acme.myshopify.com"})
    parts = urlsplit(url)
    assert (parts.netloc, parts.path) == ("acme.myshopify.com", "/admin/oauth/authorize")
    query = parse_qs(parts.query)
    assert query["scope"] == ["read_orders,read_products"] and query["client_id"] == ["shp-key"]
    with pytest.raises(OAuthStateError) as caught:
        await env.flow.complete("shopify", {"code": "c", "state": query["state"][0], "shop": "other.myshopify.com"})
    assert caught.value.problem == "mismatch"
