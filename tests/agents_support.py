"""Fixtures and small real in-process fakes for the agent bridge tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from ionflux.agents.context import AgentContext, Trigger, Unavailable
from ionflux.agents.service_plugin import AgentService
from ionflux.app import create_app
from ionflux.core.platform import Platform
from ionflux.services import services_running
from tests.conftest import WorkspaceHandle

FINAL = ("succeeded", "failed", "skipped")
FAST_AGENT_ENV = {
    "IONFLUX_AGENTS_RUNNER_POLL_SECONDS": "0.02",
    "IONFLUX_AGENTS_SCHEDULER_TICK_SECONDS": "3600",  # tests tick the scheduler themselves
    "IONFLUX_AGENTS_RETRY_BASE_SECONDS": "0",
    "IONFLUX_AGENTS_MANUAL_WAIT_SECONDS": "20",
}


@pytest.fixture(name="agents_client")
async def agents_client_fixture(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, AgentService]]:
    """An HTTP client on an app serving only the platform and the agent bridge, with fast timings."""
    for name, value in FAST_AGENT_ENV.items():
        monkeypatch.setenv(name, value)
    app = create_app(platform, only=["agents"], manage_lifecycle=False)
    service = platform.services["agents"]
    assert isinstance(service, AgentService)
    service.ports = lambda *_: {name: Unavailable(name) for name in ("llm", "email", "whatsapp", "memory", "shopify")}
    async with services_running(list(platform.services.values())), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ionflux.test"
    ) as client:
        yield client, service


class FunctionAgent:
    """An agent whose behaviour is a function (tests count and script its calls)."""

    def __init__(self, fn: Callable[[AgentContext, Trigger], Awaitable[dict[str, Any]]]) -> None:
        self.fn = fn
        self.calls: list[Trigger] = []

    async def run(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        self.calls.append(trigger)
        return await self.fn(ctx, trigger)


async def poll(check: Callable[[], Awaitable[Any]], *, timeout: float = 15.0, what: str = "condition") -> Any:
    """Call `check` until it returns something truthy, or fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.01
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


async def configure(client: httpx.AsyncClient, ws: WorkspaceHandle, definition_id: str, config: Any) -> str:
    r = await client.post("/v1/agents/configurations", headers=ws.headers,
                          json={"definition_id": definition_id, "yaml_config": config})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def publish(client: httpx.AsyncClient, ws: WorkspaceHandle, topic: str, data: dict[str, Any]) -> str:
    r = await client.post("/v1/events", headers=ws.headers, json={"type": topic, "data": data})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def settled(client: httpx.AsyncClient, ws: WorkspaceHandle, cfg: str, n: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        runs = (await client.get(f"/v1/agents/configurations/{cfg}/runs", headers=ws.headers)).json()["runs"]
        return runs if len([r for r in runs if r["status"] in FINAL]) >= n else []

    runs: list[dict[str, Any]] = await poll(check, what=f"{n} finished run(s)")
    return sorted(runs, key=lambda r: r["created_at"])


async def events(client: httpx.AsyncClient, ws: WorkspaceHandle, topic: str) -> list[dict[str, Any]]:
    return list((await client.get(f"/v1/events?topic={topic}", headers=ws.headers)).json()["events"])
