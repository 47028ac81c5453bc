"""Set-up for the Shopify tests: the Shopify simulator on loopback, the app with the Shopify service
pointed at it (by IONFLUX_SHOPIFY_* settings, as in production), connections, and event look-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from ionflux.app import create_app
from ionflux.core.models import PLATFORM_WORKSPACE, OutboxEvent
from ionflux.core.platform import Platform
from ionflux.integrations.shopify.service import ShopifyService
from ionflux.sandbox import SimulatorServer
from ionflux.sandbox.shopify import PlanLimits, ShopifySimulator
from ionflux.sandbox.shopify_store import StoreSeed
from ionflux.sandbox.webhook_sender import WebhookSender
from ionflux.services import services_running
from tests.conftest import WorkspaceHandle

API_KEY = "shopify-api-key-0123"
API_SECRET = "shpss_sim_secret_0123456789abcdef"
SHOP = "acme.myshopify.com"
PUBLIC = "https://ionflux.test"


@dataclass
class ShopifyEnv:
    platform: Platform
    sim: ShopifySimulator
    server: SimulatorServer
    client: httpx.AsyncClient
    service: ShopifyService
    workspace: WorkspaceHandle

    async def connect(self, shop: str = SHOP, workspace: WorkspaceHandle | None = None,
                      **params: str) -> dict[str, Any]:
        """Install the app on `shop`: initiate, consent at the simulator, follow the callback."""
        callback = await self.consent(shop, workspace, **params)
        response = await self.client.get(callback)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def consent(self, shop: str = SHOP, workspace: WorkspaceHandle | None = None, **params: str) -> str:
        ws = workspace or self.workspace
        start = await self.client.get("/integrations/shopify/auth/initiate", params={"shop": shop, **params},
                                      headers=ws.headers)
        assert start.status_code == 302, start.text
        async with httpx.AsyncClient() as browser:
            consent = await browser.get(start.headers["location"])
        assert consent.status_code == 302, consent.text
        location = consent.headers["location"]
        assert location.startswith(PUBLIC)
        parts = urlsplit(location)
        return f"{parts.path}?{parts.query}"

    async def events(self, type_: str | None = None, subject: str | None = None) -> list[OutboxEvent]:
        async with self.platform.db.system() as session:
            query = select(OutboxEvent).order_by(OutboxEvent.seq)
            if type_ is not None:
                query = query.where(OutboxEvent.type == type_)
            if subject is not None:
                query = query.where(OutboxEvent.subject == subject)
            return list((await session.scalars(query)).all())

    async def until(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Poll an async or sync check until it returns something truthy (with a deadline, no fixed sleep)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError("condition not met before the deadline")
            await asyncio.sleep(0.02)


def make_env_fixture(seed: StoreSeed | None = None, limits: PlanLimits | None = None,
                     **settings: str) -> Any:
    @pytest.fixture
    async def shopify(platform: Platform, workspace: WorkspaceHandle,
                      monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ShopifyEnv]:
        sim = ShopifySimulator(API_KEY, API_SECRET, shops={SHOP: seed or StoreSeed(orders=60, products=8,
                                                                                   customers=20)},
                               limits=limits)
        async with SimulatorServer(sim.app, name="shopify") as server:
            env = {"IONFLUX_SHOPIFY_BASE_URL": f"{server.base_url}/shops/{{shop}}",
                   "IONFLUX_SHOPIFY_PUBLIC_URL": PUBLIC, "IONFLUX_SHOPIFY_RECONCILE_INTERVAL_SECONDS": "0",
                   "IONFLUX_SHOPIFY_PAGE_SIZE": "25", "IONFLUX_SHOPIFY_GRAPHQL_TIMEOUT_SECONDS": "30"}
            env.update({f"IONFLUX_SHOPIFY_{k.upper()}": v for k, v in settings.items()})
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            await platform.vault.put(PLATFORM_WORKSPACE, "shopify",
                                     {"client_id": API_KEY, "client_secret": API_SECRET})
            app = create_app(platform, only=["shopify"], manage_lifecycle=False)
            service = platform.services["shopify"]
            assert isinstance(service, ShopifyService)
            async with services_running(list(platform.services.values())), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as client:
                sim.sender = WebhookSender(client, max_attempts=8, backoff_base=0.01, backoff_cap=0.05)
                yield ShopifyEnv(platform, sim, server, client, service, workspace)
    return shopify
