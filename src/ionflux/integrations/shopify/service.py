"""`ShopifyService`: the Shopify integration plugged into the platform (routes, webhook mapper, consumer,
periodic reconciliation). Other services use it through `interface.ShopifyIntegration`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from fastapi import APIRouter
from sqlalchemy import delete, select

from ionflux.core.models import Connection, Credential
from ionflux.core.oauth import OAuthFlow
from ionflux.core.platform import Platform
from ionflux.core.service import Service
from ionflux.core.webhooks.base import WebhookProvider
from ionflux.integrations.shopify.admin import ShopifyAdminClient
from ionflux.integrations.shopify.connect import ShopifyConnector, provider_specs
from ionflux.integrations.shopify.events import ShopifyWebhookConsumer
from ionflux.integrations.shopify.settings import ShopifySettings
from ionflux.integrations.shopify.sync import ShopifySync
from ionflux.integrations.shopify.webhooks import PiiPolicy, ShopifyEventWebhooks

log = logging.getLogger("ionflux.shopify")


class ShopifyService(Service):
    name = "shopify"

    def __init__(self, platform: Platform, settings: ShopifySettings | None = None) -> None:
        super().__init__(platform)
        self.settings = settings or ShopifySettings()
        self.flow = OAuthFlow.for_platform(platform, providers=provider_specs(self.settings))
        self.admin = ShopifyAdminClient(self.settings, registry=platform.metrics.registry)
        self.connector = ShopifyConnector(platform.db, platform.vault, self.flow, self.admin, self.settings)
        self.sync = ShopifySync(platform.db, self.admin, self.flow.access_token, self.settings,
                                lease=timedelta(seconds=self.settings.sync_lease_seconds))
        self.pii = PiiPolicy(platform.db)
        consumer = ShopifyWebhookConsumer(on_revoked=self.sync.stop)
        platform.bus.subscribe(consumer.name, consumer.patterns, consumer, batch=consumer.batch)
        self._background: list[asyncio.Task[None]] = []

    def routers(self) -> list[APIRouter]:
        from ionflux.integrations.shopify.api import auth_router, router

        return [auth_router, router]

    def webhook_providers(self) -> list[WebhookProvider]:
        """Replaces the core Shopify mapper in the ingestion pipeline (typed data, PII redaction)."""
        return [ShopifyEventWebhooks(self.pii)]

    async def access_token(self, workspace_id: str, connection_id: str) -> str:
        return await self.flow.access_token(workspace_id, connection_id)

    async def start(self) -> None:
        await self._sweep_revoked_tokens()
        self._background.append(asyncio.create_task(self._resume_forever(), name="shopify-resume"))
        if self.settings.reconcile_interval_seconds > 0:
            self._background.append(asyncio.create_task(self._reconcile_forever(), name="shopify-reconcile"))

    async def stop(self) -> None:
        tasks = [t for t in (*self._background, *self.sync.tasks.values()) if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.admin.aclose()
        await self.flow.aclose()

    async def _resume_forever(self) -> None:
        """Runs left behind by a crashed process (this one before a restart, or another) carry on here."""
        while True:
            with contextlib.suppress(Exception):
                await self.sync.resume_orphans()
            await asyncio.sleep(max(1.0, self.settings.sync_lease_seconds / 2))

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
            with contextlib.suppress(Exception):
                await self.sync.reconcile_all()

    async def _sweep_revoked_tokens(self) -> None:
        """Tokens of revoked connections must not outlive them (a crash between steps, an old version)."""
        async with self.platform.db.system() as session:
            names = (await session.execute(select(Connection.workspace_id, Connection.credential_name).where(
                Connection.provider == "shopify", Connection.status == "revoked"))).all()
            for workspace_id, name in names:
                if not name.startswith("oauth-"):  # only token credentials, never an app's own secret
                    continue
                await session.execute(delete(Credential).where(
                    Credential.workspace_id == workspace_id, Credential.provider == "shopify",
                    Credential.name == name).execution_options(synchronize_session=False))
