"""Provider simulators: a loopback server any simulator app runs in, with scripted faults and a request log."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ionflux.sandbox import Fault, FaultScript, RateLimitRule, SandboxControl, SimulatorServer


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"path": request.url.path, "body": (await request.body()).decode()})


def echo_app() -> Starlette:
    return Starlette(routes=[Route("/{rest:path}", _echo, methods=["GET", "POST", "PUT", "DELETE"])])


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


async def test_async_server_serves_the_app_on_loopback_and_logs_requests() -> None:
    async with SimulatorServer(echo_app()) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        assert sim.base_url.startswith("http://127.0.0.1:")
        response = await client.post("/admin/orders.json?limit=5", json={"a": 1}, headers={"X-Test": "yes"})
        assert response.json() == {"path": "/admin/orders.json", "body": '{"a":1}'}
        [logged] = sim.requests
        assert (logged.method, logged.path, logged.query) == ("POST", "/admin/orders.json", "limit=5")
        assert logged.headers["x-test"] == "yes" and logged.json() == {"a": 1}
        port = sim.port
    assert _port_closed(port)


def test_threaded_server_runs_several_simulators_from_sync_code() -> None:
    with SimulatorServer(echo_app(), name="a") as a, SimulatorServer(echo_app(), name="b") as b:
        assert a.port != b.port
        assert httpx.get(a.base_url + "/x").json()["path"] == "/x"
        assert httpx.get(b.base_url + "/y").json()["path"] == "/y"
        ports = (a.port, b.port)
    assert all(_port_closed(p) for p in ports)


async def test_scripted_statuses_are_served_in_order_then_the_app_answers() -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    async with SimulatorServer(echo_app()) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.faults.push(
            Fault.too_many_requests(retry_after="2.0", path="/admin"),
            Fault.too_many_requests(retry_after=when),
            Fault.respond(503, times=2),
        )
        first = await client.get("/other")  # the 429 rule is for /admin only, so the next matching fault applies
        assert first.status_code == 429
        assert parsedate_to_datetime(first.headers["retry-after"]).timestamp() == int(when.timestamp())
        second = await client.get("/admin/shop.json")
        assert second.status_code == 429 and second.headers["retry-after"] == "2.0"
        assert [(await client.get("/x")).status_code for _ in range(3)] == [503, 503, 200]
        assert [r.outcome for r in sim.requests] == ["status:429", "status:429", "status:503", "status:503", "passed"]


async def test_a_timeout_fault_holds_the_response_past_the_client_timeout() -> None:
    async with SimulatorServer(echo_app()) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.faults.push(Fault.timeout(30))
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow", timeout=httpx.Timeout(5, read=0.3))
        assert (await client.get("/fast")).status_code == 200


async def test_a_reset_fault_closes_the_connection_without_a_response() -> None:
    async with SimulatorServer(echo_app()) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.faults.push(Fault.reset(times=2))
        for _ in range(2):
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
                await client.get("/x")
        assert (await client.get("/x")).status_code == 200
        assert [r.outcome for r in sim.requests] == ["reset", "reset", "passed"]


async def test_latency_applies_to_every_request() -> None:
    async with SimulatorServer(echo_app(), faults=FaultScript(latency=0.5)) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/x", timeout=httpx.Timeout(5, read=0.05))
            sim.faults.latency = 0
            assert (await client.get("/x")).status_code == 200


async def test_leaky_bucket_rate_limit_answers_429_with_shopify_headers_and_refills() -> None:
    now = [100.0]
    script = FaultScript(clock=lambda: now[0])
    script.add_rate_limit(RateLimitRule(capacity=3, leak_rate=2.0, key_header="X-Shopify-Access-Token"))
    async with SimulatorServer(echo_app(), faults=script) as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        token = {"X-Shopify-Access-Token": "shpat_a"}
        ok = [await client.get("/admin/x.json", headers=token) for _ in range(3)]
        assert [r.headers["x-shopify-shop-api-call-limit"] for r in ok] == ["1/3", "2/3", "3/3"]
        limited = await client.get("/admin/x.json", headers=token)
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "0.5" and limited.headers["x-shopify-shop-api-call-limit"] == "3/3"
        other = await client.get("/admin/x.json", headers={"X-Shopify-Access-Token": "shpat_b"})
        assert other.status_code == 200, "each key has its own bucket"
        now[0] += 0.5  # one unit leaks
        again = await client.get("/admin/x.json", headers=token)
        assert again.status_code == 200 and again.headers["x-shopify-shop-api-call-limit"] == "3/3"


def test_admin_endpoints_script_a_simulator_from_another_process() -> None:
    with SimulatorServer(echo_app()) as sim:
        script = (
            "import sys\n"
            "from ionflux.sandbox import Fault, SandboxControl\n"
            "c = SandboxControl(sys.argv[1])\n"
            "c.push(Fault.respond(502, times=1), Fault.reset())\n"
        )
        subprocess.run([sys.executable, "-c", script, sim.base_url], check=True, timeout=60)
        assert [f.status for f in sim.faults.pending()] == [502, 500]
        assert httpx.get(sim.base_url + "/x").status_code == 502
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(sim.base_url + "/x")
        with SandboxControl(sim.base_url) as control:
            logged = control.requests()
            assert [r["outcome"] for r in logged] == ["status:502", "reset"]
            assert all(not r["path"].startswith("/_sandbox") for r in logged), "admin calls are not logged"
            control.reset()
        assert sim.requests == []


def test_admin_rejects_a_malformed_fault_with_400() -> None:
    with SimulatorServer(echo_app()) as sim:
        response = httpx.post(sim.base_url + "/_sandbox/faults", json={"kind": "status", "colour": "red"})
        assert response.status_code == 400 and "colour" in response.json()["error"]
        response = httpx.post(sim.base_url + "/_sandbox/faults", json={"kind": "explode"})
        assert response.status_code == 400 and "explode" in response.json()["error"]
        assert sim.faults.pending() == []


async def test_shutdown_is_prompt_while_a_request_is_held() -> None:
    sim = SimulatorServer(echo_app(), shutdown_timeout=5)
    await sim.start_async()
    sim.faults.push(Fault.timeout(60))
    client = httpx.AsyncClient(base_url=sim.base_url)
    held = asyncio.create_task(client.get("/held", timeout=30))
    deadline = time.monotonic() + 5
    while not sim.requests and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    port = sim.port
    await sim.stop_async()  # bounded by shutdown_timeout; the held request must not keep it open
    assert _port_closed(port)
    assert (await asyncio.wait_for(held, 5)).status_code == 200, "the held request is released, not cut off"
    await client.aclose()
