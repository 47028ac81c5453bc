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
