"""The provider HTTP toolkit, against simulators on loopback: limits, retries, breakers, error mapping."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ionflux.core.errors import AuthFailed, InvalidRequest, ProviderApiError, ProviderUnavailable, RateLimited
from ionflux.core.http import (
    BreakerBoard,
    BreakerSpec,
    CostLimiter,
    LeakyBucketLimiter,
    LimiterSpec,
    ProviderClient,
    ProviderProfile,
    RetryPolicy,
    Timeouts,
    TokenBucketLimiter,
    parse_retry_after,
)
from ionflux.core.observability import JsonFormatter
from ionflux.sandbox import Fault, RateLimitRule, SimulatorServer

TOKEN = "shpat_fake0123456789abcdef0123456789ab"
BODY_SECRET = "client_secret=cs_live_topsecret_42"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(graphql_state: dict[str, Any] | None = None) -> Starlette:
    state = graphql_state if graphql_state is not None else {}

    async def items(request: Request) -> Response:
        return JSONResponse({"ok": True, "method": request.method})

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        echoed = request.headers.get("x-shopify-access-token", "")
        body = {"errors": f"Invalid API key or access token: {echoed}", "debug": BODY_SECRET, "pad": "x" * 5000}
        return JSONResponse(body, status_code=code)

    async def graphql(request: Request) -> Response:
        throttle = state.pop("throttle_once", None)
        body: dict[str, Any] = {"data": {"shop": {"name": "demo"}}}
        if throttle:
            body = {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
        body["extensions"] = {
            "cost": {
                "requestedQueryCost": 50,
                "actualQueryCost": 0 if throttle else 50,
                "throttleStatus": dict(state["status"]),
            }
        }
        return JSONResponse(body)

    return Starlette(
        routes=[
            Route("/items", items, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/status/{code}", status, methods=["GET", "POST"]),
            Route("/graphql.json", graphql, methods=["POST"]),
            Route("/garbled", lambda r: Response(b"not gzip at all", headers={"content-encoding": "gzip"})),
        ]
    )


def profile(base_url: str, **changes: Any) -> ProviderProfile:
    base = ProviderProfile(
        name="acme",
        base_url=base_url,
        timeouts=Timeouts(connect=2, read=5, write=5, pool=2, total=20),
        retry=RetryPolicy(max_attempts=4, backoff_base=0.01, backoff_cap=0.05, retry_after_cap=5),
        auth=replace(ProviderProfile("x", "y").auth, header="X-Shopify-Access-Token", scheme=None),
    )
    return replace(base, **changes)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(make_app(), name="acme") as server:
        yield server


def sample(client: ProviderClient, name: str, **labels: str) -> float:
    return client.metrics.registry.get_sample_value(name, {"provider": "acme", **labels}) or 0.0


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- rate limits ------------------------------------------------------------------------------------


async def test_twenty_concurrent_callers_stay_within_the_provider_bucket(sim: SimulatorServer) -> None:
    # The client's budget is half the provider's, so a slow machine that bunches up sends stays under it.
    sim.faults.add_rate_limit(RateLimitRule(capacity=10, leak_rate=20.0, path="/items"))
    spec = LimiterSpec(kind="leaky_bucket", capacity=5, rate=10.0, feedback_header="X-Shopify-Shop-Api-Call-Limit")
    async with ProviderClient(profile(sim.base_url, limiter=spec)) as client:
        responses = await asyncio.gather(*(client.request("GET", "/items", account="s1") for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.outcome for r in sim.requests] == ["passed"] * 20, "the shared limiter kept every caller under the limit"


async def test_twenty_concurrent_callers_honour_retry_after_and_all_succeed(sim: SimulatorServer) -> None:
    # The provider allows 10 at once then 10/s, and answers `429 Retry-After: 1` beyond; the client's limiter
    # is optimistic (a burst of 20), so half the first wave is refused and must wait out the Retry-After.
    sim.faults.add_rate_limit(RateLimitRule(capacity=10, leak_rate=10.0, limit_header=None, retry_after="1"))
    spec = LimiterSpec(kind="leaky_bucket", capacity=20, rate=10.0)
    async with ProviderClient(profile(sim.base_url, limiter=spec)) as client:
        responses = await asyncio.gather(*(client.request("GET", "/items", account="s1") for _ in range(20)))
        retries = sample(client, "ionflux_provider_retries_total", reason="throttled")
    assert [r.status_code for r in responses] == [200] * 20
    refused = [r for r in sim.requests if r.outcome == "rate_limited"]
    assert len(refused) <= 10, "after a 429 every caller waited out Retry-After instead of hammering"
    assert len(sim.requests) == 20 + len(refused) == 20 + retries


async def test_a_local_limiter_refuses_a_wait_past_the_deadline() -> None:
    limiter = TokenBucketLimiter(capacity=5, rate=1.0)
    for _ in range(5):
        await limiter.acquire("whatsapp:123", deadline=time.monotonic() + 60)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("whatsapp:123", deadline=time.monotonic() + 0.1)
    assert 0.9 <= caught.value.details["retry_after"] <= 1.0
    await limiter.acquire("whatsapp:456", deadline=time.monotonic() + 0.1)  # another number's bucket
    limiter.pause("whatsapp:456", 30)
    with pytest.raises(RateLimited):
        await limiter.acquire("whatsapp:456", deadline=time.monotonic() + 1)


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    limiter = LeakyBucketLimiter(capacity=2, rate=0.01)
    await limiter.acquire("k")
    await limiter.acquire("k")
    waiter = asyncio.create_task(limiter.acquire("k"))
    for _ in range(100):  # let the waiter reserve its place
        if limiter._buckets["k"].reserved:
            break
        await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire("k", deadline=time.monotonic() + 1)
    assert caught.value.details["retry_after"] <= 100, "one unit to drain (100 s), not two"


async def test_cost_limiter_follows_the_servers_throttle_status() -> None:
    state: dict[str, Any] = {"status": {"maximumAvailable": 1000.0, "currentlyAvailable": 10.0, "restoreRate": 50.0}}
    spec = LimiterSpec(kind="cost", capacity=2000, rate=100.0)
    async with SimulatorServer(make_app(state)) as sim, ProviderClient(profile(sim.base_url, limiter=spec)) as client:
        assert isinstance(client.limiter, CostLimiter)
        query = {"query": "{ shop { name } }"}
        await client.request("POST", "/graphql.json", account="s1", json=query, idempotent=True, cost=5)
        assert 10 <= client.limiter.available("acme:s1") < 60, "the server's figures replaced the 2000-point guess"
        with pytest.raises(RateLimited) as caught:
            await client.request("POST", "/graphql.json", account="s1", json=query, cost=500, total_timeout=1)
        assert caught.value.details["limiter"] == "local" and caught.value.details["retry_after"] > 1
        assert len(sim.requests) == 1, "a query the bucket cannot pay for is not sent"

        state["status"] = {"maximumAvailable": 1000.0, "currentlyAvailable": 1000.0, "restoreRate": 50.0}
        await client.request("POST", "/graphql.json", account="s1", json=query, idempotent=True, cost=5)
        await client.request("POST", "/graphql.json", account="s1", json=query, cost=500, total_timeout=1)
        assert len(sim.requests) == 3


async def test_a_throttled_graphql_body_is_retried_when_safe_and_rate_limited_otherwise() -> None:
    full = {"maximumAvailable": 1000.0, "currentlyAvailable": 1000.0, "restoreRate": 1000.0}
    state: dict[str, Any] = {"status": full, "throttle_once": True}
    spec = LimiterSpec(kind="cost", capacity=1000, rate=1000.0)
    async with SimulatorServer(make_app(state)) as sim, ProviderClient(profile(sim.base_url, limiter=spec)) as client:
        response = await client.request("POST", "/graphql.json", json={"query": "{}"}, idempotent=True)
        assert response.json()["data"] == {"shop": {"name": "demo"}} and len(sim.requests) == 2
        state["throttle_once"] = True
        with pytest.raises(RateLimited):
            await client.request("POST", "/graphql.json", json={"query": "mutation {}"})
        assert len(sim.requests) == 3


# -- retries ----------------------------------------------------------------------------------------


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after("2.0") == 2.0
    assert parse_retry_after(" 0.25 ") == 0.25
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 30.0
    assert parse_retry_after("Tue, 03 Nov 2026 12:00:05 -0000", now=now.timestamp()) == 5.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now.timestamp()) == 0.0
    for bad in (None, "", "soon", "-1", "nan", "inf"):
        assert parse_retry_after(bad) is None


async def test_retry_after_as_http_date_and_as_fractional_seconds_is_honoured(sim: SimulatorServer) -> None:
    when = datetime.now(UTC) + timedelta(seconds=1)
    sim.faults.push(Fault.too_many_requests(retry_after=when), Fault.too_many_requests(retry_after="0.2"))
    async with ProviderClient(profile(sim.base_url)) as client:
        assert (await client.request("GET", "/items")).status_code == 200
    assert [r.outcome for r in sim.requests] == ["status:429", "status:429", "passed"]


async def test_a_retry_after_beyond_the_cap_is_not_slept_but_reported(sim: SimulatorServer) -> None:
    sim.faults.push(Fault.too_many_requests(retry_after=3600))
    async with ProviderClient(profile(sim.base_url)) as client:
        with pytest.raises(RateLimited) as caught:
            await client.request("GET", "/items")
    assert caught.value.details["retry_after"] == 3600 and len(sim.requests) == 1


async def test_a_post_is_not_retried_on_5xx_unless_marked_safe(sim: SimulatorServer) -> None:
    async with ProviderClient(profile(sim.base_url)) as client:
        sim.faults.push(Fault.respond(503))
        with pytest.raises(ProviderUnavailable):
            await client.request("POST", "/items", json={"n": 1})
        assert len(sim.requests) == 1
        sim.faults.push(Fault.respond(503))
        assert (await client.request("POST", "/items", json={"n": 2}, idempotent=True)).status_code == 200
        sim.faults.push(Fault.respond(502))
        response = await client.request("POST", "/items", json={"n": 3}, headers={"Idempotency-Key": "k-3"})
        assert response.status_code == 200
        sim.faults.push(Fault.respond(500))
        assert (await client.request("PUT", "/items", json={"n": 4})).status_code == 200
    assert [r.outcome for r in sim.requests] == [
        "status:503",
        "status:503",
        "passed",
        "status:502",
        "passed",
        "status:500",
        "passed",
    ]


async def test_a_connection_reset_is_retried_for_idempotent_requests_only(sim: SimulatorServer) -> None:
    async with ProviderClient(profile(sim.base_url)) as client:
        sim.faults.push(Fault.reset(times=2))
        assert (await client.request("GET", "/items")).status_code == 200
        assert [r.outcome for r in sim.requests] == ["reset", "reset", "passed"]
        sim.faults.push(Fault.reset())
        with pytest.raises(ProviderUnavailable) as caught:
            await client.request("POST", "/items", json={})
        assert caught.value.details["reason"] == "connection_error" and len(sim.requests) == 4


async def test_timeouts_become_provider_unavailable(sim: SimulatorServer) -> None:
    quick = profile(
        sim.base_url,
        timeouts=Timeouts(connect=2, read=0.2, total=20),
        retry=RetryPolicy(max_attempts=2, backoff_base=0.01),
    )
    async with ProviderClient(quick) as client:
        sim.faults.push(Fault.timeout(30, times=2))
        with pytest.raises(ProviderUnavailable) as caught:
            await client.request("GET", "/items")
        assert caught.value.details["reason"] == "timeout" and len(sim.requests) == 2
    # The total deadline bounds the call even when each attempt's read timeout is long.
    async with ProviderClient(profile(sim.base_url)) as client:
        sim.faults.push(Fault.timeout(30, times=None))
        with pytest.raises(ProviderUnavailable) as caught:
            await client.request("GET", "/items", total_timeout=0.3)
        assert caught.value.details["reason"] == "timeout" and len(sim.requests) == 3
        sim.faults.clear()


# -- circuit breaker --------------------------------------------------------------------------------


async def test_a_dead_host_trips_the_breaker_which_later_half_opens_and_closes() -> None:
    port = closed_port()
    clock = FakeClock()
    prof = profile(
        f"http://127.0.0.1:{port}",
        breaker=BreakerSpec(failure_threshold=3, cool_down=30),
        retry=RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_cap=0.002),
    )
    host = f"127.0.0.1:{port}"
    async with ProviderClient(prof, breakers=BreakerBoard(prof.breaker, clock=clock)) as client:
        connects = lambda: sample(client, "ionflux_provider_requests_total", method="GET", status="connect_error")  # noqa: E731
        with pytest.raises(ProviderUnavailable) as caught:
            await client.request("GET", "/items")
        assert caught.value.details["circuit"] == "open" and connects() == 3
        with pytest.raises(ProviderUnavailable) as caught:
            await client.request("GET", "/items")
        assert caught.value.details["circuit"] == "open" and connects() == 3, "open: fails fast, no connection"
        assert client.breakers.states()[host] == "open"

        clock.now += 31
        assert client.breakers.states()[host] == "half_open"
        with pytest.raises(ProviderUnavailable):
            await client.request("GET", "/items")
        assert connects() == 4 and client.breakers.states()[host] == "open", "one probe, failed: open again"

        clock.now += 31
        async with SimulatorServer(make_app(), port=port):
            assert (await client.request("GET", "/items")).status_code == 200
        assert client.breakers.states()[host] == "closed"
        gauge = client.metrics.registry.get_sample_value(
            "ionflux_provider_circuit_state", {"provider": "acme", "host": host}
        )
        assert gauge == 0


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthFailed),
        (403, AuthFailed),
        (400, InvalidRequest),
        (422, InvalidRequest),
        (404, ProviderApiError),
        (409, ProviderApiError),
        (500, ProviderUnavailable),
        (429, RateLimited),
    ],
)
async def test_errors_map_to_codes_and_never_carry_a_secret(
    sim: SimulatorServer, caplog: pytest.LogCaptureFixture, status: int, error: type[Exception]
) -> None:
    caplog.set_level(logging.DEBUG)
    prof = profile(sim.base_url, retry=RetryPolicy(max_attempts=2, backoff_base=0.001))
    async with ProviderClient(prof) as client:
        with pytest.raises(error) as caught:
            await client.request("GET", f"/status/{status}?api_key=sk-query-secret-123456", credential=TOKEN)
        failures = sample(client, "ionflux_provider_errors_total", code=caught.value.code)  # type: ignore[attr-defined]
    exc = caught.value
    details = exc.details  # type: ignore[attr-defined]
    assert details["status"] == status and details["provider"] == "acme"
    assert "Invalid API key" in details["provider_body"] and details["provider_body"].endswith("[truncated]")
    assert len(details["provider_body"]) < 2100
    error_text = "\n".join([str(exc), repr(exc), json.dumps(exc.to_dict())])  # type: ignore[attr-defined]
    for secret in (TOKEN, "cs_live_topsecret_42", "sk-query-secret-123456"):
        assert secret not in error_text
    for secret in (TOKEN, "cs_live_topsecret_42"):
        assert secret not in caplog.text, "no log line at any level, ours or httpx's, carries them"
    # httpx logs request URLs; the app's JSON log formatter redacts a key in a query string.
    app_logs = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "sk-query-secret-123456" not in app_logs
    assert sim.requests[0].headers["x-shopify-access-token"] == TOKEN, "the credential did reach the provider"
    assert failures == 1


async def test_an_undecodable_body_is_a_provider_api_error(sim: SimulatorServer) -> None:
    async with ProviderClient(profile(sim.base_url, retry=RetryPolicy(max_attempts=1))) as client:
        with pytest.raises(ProviderApiError) as caught:
            await client.request("GET", "/garbled")
    assert caught.value.details["reason"] == "bad_response"
