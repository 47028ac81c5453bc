"""Token upkeep: proactive refresh, rotation, single flight (in a process and across two), invalid_grant."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from ionflux.core.models import Connection, OutboxEvent
from ionflux.core.oauth import CATALOGUE, OAuthFlow, ReauthorizationRequired, TokenEndpointError
from ionflux.core.platform import Platform
from ionflux.sandbox import Fault, SimulatorServer
from ionflux.sandbox.oauth_provider import OAuthProviderSimulator, SimulatorConfig

REDIRECT = "https://app.ionflux.test/oauth/callback"
WORKER = Path(__file__).with_name("oauth_refresh_worker.py")
SECRET = "sim-secret-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Env:
    platform: Platform
    sim: OAuthProviderSimulator
    server: SimulatorServer
    flow: OAuthFlow
    clock: Clock
    ws: str

    async def connect(self) -> Connection:
        url = await self.flow.start(self.ws, "generic", scopes=["a", "b"], redirect_uri=REDIRECT)
        async with httpx.AsyncClient() as browser:
            location = (await browser.get(url)).headers["location"]
        callback = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        return await self.flow.complete("generic", callback)

    async def tokens(self, connection: Connection) -> dict[str, str]:
        return dict(await self.platform.vault.get(self.ws, "generic", connection.credential_name))


@pytest.fixture
async def env(platform: Platform) -> AsyncIterator[Env]:
    # 60 s tokens are already inside the 5-minute refresh skew: every first access_token refreshes.
    sim = OAuthProviderSimulator(SimulatorConfig(access_token_ttl=60, refresh_latency=0.3))
    sim.register_client("sim-client", SECRET, [REDIRECT])
    created = await platform.workspaces.create("acme")
    await platform.vault.put(created.id, "generic", {"client_id": "sim-client", "client_secret": SECRET})
    clock = Clock()
    async with SimulatorServer(sim.app, name="oauth") as server:
        flow = OAuthFlow(platform.db, platform.vault, clock=clock,
                         providers={"generic": CATALOGUE["generic"].at(server.base_url)})
        yield Env(platform, sim, server, flow, clock, created.id)
        await flow.aclose()


async def status_of(env: Env, connection: Connection) -> str:
    async with env.platform.db.tenant(env.ws) as session:
        row = await session.scalar(select(Connection).where(Connection.id == connection.id))
    assert row is not None
    return row.status


async def test_refresh_happens_before_expiry_and_stores_the_rotated_refresh_token(env: Env) -> None:
    env.sim.config.access_token_ttl = 3600
    connection = await env.connect()
    first = await env.tokens(connection)
    assert await env.flow.access_token(env.ws, connection.id) == first["access_token"]
    env.clock.now += timedelta(minutes=54)  # 6 minutes left: outside the 5-minute skew
    assert await env.flow.access_token(env.ws, connection.id) == first["access_token"]
    env.clock.now += timedelta(minutes=2)  # 4 minutes left: refresh now, not after a 401
    fresh = await env.flow.access_token(env.ws, connection.id)
    second = await env.tokens(connection)
    assert fresh == second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert env.sim.stats["refreshes"] == 1
    # The provider really rotated: the old refresh token is dead, so keeping it would have broken us.
    async with httpx.AsyncClient() as c:
        reused = await c.post(env.server.base_url + "/oauth/token", auth=("sim-client", SECRET),
                              data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")


async def test_fifty_concurrent_callers_cause_one_refresh(env: Env) -> None:
    connection = await env.connect()
    env.sim.config.access_token_ttl = 3600
    tokens = await asyncio.gather(*(env.flow.access_token(env.ws, connection.id) for _ in range(50)))
    assert env.sim.stats["refresh_requests"] == 1
    assert len(set(tokens)) == 1 and tokens[0] == (await env.tokens(connection))["access_token"]
    assert env.flow.stats["flights"] == 1


async def test_two_processes_with_25_callers_each_cause_one_refresh(env: Env) -> None:
    connection = await env.connect()
    env.sim.config.access_token_ttl = 3600
    env.sim.config.refresh_latency = 1.0  # the refresh outlasts any start-up skew between the processes
    settings = env.platform.settings
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), settings.effective_database_url, str(settings.data_dir), env.ws,
        connection.id, env.server.base_url, "25",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stdout is not None and worker.stdin is not None
        ready = await asyncio.wait_for(worker.stdout.readline(), timeout=60)
        assert ready == b"ready\n", ready + (await worker.stderr.read() if worker.stderr else b"")
        await env.platform.db.ping()
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
        mine, (out, err) = await asyncio.gather(
            asyncio.gather(*(env.flow.access_token(env.ws, connection.id) for _ in range(25))),
            asyncio.wait_for(worker.communicate(), timeout=60),
        )
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert worker.returncode == 0, err.decode()
    theirs = json.loads(out.decode().strip().splitlines()[-1])
    assert env.sim.stats["refresh_requests"] == 1
    assert set(mine) == set(theirs["tokens"]) == {(await env.tokens(connection))["access_token"]}
    # Both processes really raced: each started a refresh flight; one refreshed, the other adopted.
    assert env.flow.stats["flights"] == 1 and theirs["stats"]["flights"] == 1
    assert env.flow.stats["refreshed"] + theirs["stats"].get("refreshed", 0) == 1
    assert env.flow.stats["adopted"] + theirs["stats"].get("adopted", 0) == 1


async def test_invalid_grant_marks_the_connection_needs_reauth_and_emits_once(env: Env) -> None:
    connection = await env.connect()
    refresh_token = (await env.tokens(connection))["refresh_token"]
    async with httpx.AsyncClient() as c:  # the user revoked the app at the provider
        await c.post(env.server.base_url + "/oauth/revoke", auth=("sim-client", SECRET),
                     data={"token": refresh_token})
    results = await asyncio.gather(*(env.flow.access_token(env.ws, connection.id) for _ in range(10)),
                                   return_exceptions=True)
    assert all(isinstance(r, ReauthorizationRequired) for r in results), results
    assert await status_of(env, connection) == "needs_reauth"
    with pytest.raises(ReauthorizationRequired):
        await env.flow.access_token(env.ws, connection.id)
    assert env.sim.stats["refresh_requests"] == 1
    async with env.platform.db.system() as session:
        events = (await session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "platform.generic.events.connections.needs_reauth"))).all()
    assert [e.data["reason"] for e in events] == ["invalid_grant"]
    # Reconnecting the same account brings the same connection back to active.
    again = await env.connect()
    assert again.id == connection.id and await status_of(env, connection) == "active"


async def test_a_provider_outage_fails_the_call_but_keeps_the_connection(env: Env) -> None:
    connection = await env.connect()
    env.sim.config.access_token_ttl = 3600
    env.server.faults.push(Fault.respond(503, body={"error": "temporarily_unavailable"}, path="/oauth/token"))
    with pytest.raises(TokenEndpointError) as caught:
        await env.flow.access_token(env.ws, connection.id)
    assert caught.value.status == 503
    assert await status_of(env, connection) == "active"
    assert await env.flow.access_token(env.ws, connection.id) == (await env.tokens(connection))["access_token"]


async def test_provider_errors_and_logs_never_show_a_token(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    connection = await env.connect()
    refresh_token = (await env.tokens(connection))["refresh_token"]
    env.server.faults.push(Fault.respond(400, path="/oauth/token", body={
        "error": "invalid_request", "error_description": f"cannot parse {refresh_token} with {SECRET}"}))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TokenEndpointError) as caught:
        await env.flow.access_token(env.ws, connection.id)
    shown = str(caught.value) + repr(caught.value.to_dict()) + caplog.text
    assert "cannot parse [redacted]" in str(caught.value)
    assert refresh_token not in shown and SECRET not in shown
