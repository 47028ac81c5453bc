"""`WebhookIngestion`: verify -> parse -> route -> dedupe + persist (with the event) -> acknowledge.

Everything after the commit (publishing, SNS subscription confirmation) runs after the answer: the
outbox relay is woken by the commit and publishes. Verification keys and connection lookups are
cached for a few seconds, so a delivery costs one transaction and no vault decryption on the hot path
(a rotated secret is picked up within `secret_ttl`; Shopify's previous secret covers the gap).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from ionflux.core.errors import IonfluxError, NotFound
from ionflux.core.models import PLATFORM_WORKSPACE, Connection
from ionflux.core.platform import Platform
from ionflux.core.ttl_cache import TtlCache
from ionflux.core.webhooks.base import (
    Handshake,
    InboundPart,
    MalformedDelivery,
    NotConfigured,
    WebhookProvider,
    WebhookRejected,
)
from ionflux.core.webhooks.inbox import InboxRecord, Stored, WebhookInbox
from ionflux.core.webhooks.metrics import WebhookMetrics
from ionflux.core.webhooks.models import WebhookDelivery
from ionflux.core.webhooks.registry import WebhookRegistry, default_registry
from ionflux.core.webhooks.sns import SnsWebhooks

log = logging.getLogger(__name__)
DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class Route:
    connection_id: str
    workspace_id: str
    credential_name: str


@dataclass(frozen=True)
class Accepted:
    stored: list[Stored]

    @property
    def duplicate(self) -> bool:
        return all(s.event_id is None for s in self.stored)


class WebhookIngestion:
    def __init__(self, platform: Platform, registry: WebhookRegistry | None = None, *,
                 inbox: WebhookInbox | None = None, secret_ttl: float = 30.0, connection_ttl: float = 30.0) -> None:
        self.platform = platform
        self.registry = registry or default_registry()
        for service in platform.services.values() if registry is None else ():  # a service's own mapper
            for provider in getattr(service, "webhook_providers", list)():
                self.registry.register(provider)
        self.inbox = inbox or WebhookInbox(
            platform.db, wake=platform.bus.wake, committed=platform.bus.committed,
            retention=timedelta(days=platform.settings.webhook_retention_days),
            writers=1 if platform.db.is_sqlite else platform.settings.webhook_inbox_writers,
            wake_delay=platform.settings.webhook_publish_delay_seconds)
        self.metrics = WebhookMetrics.on(platform.metrics.registry)
        self.max_body_bytes = platform.settings.webhook_max_body_bytes
        self._secrets: TtlCache[tuple[str, str, str], Mapping[str, str]] = TtlCache(secret_ttl)
        self._routes: TtlCache[tuple[str, str], Route] = TtlCache(connection_ttl)
        self._background: set[asyncio.Task[None]] = set()

    def provider(self, name: str) -> WebhookProvider:
        provider = self.registry.get(name)
        if provider is None:
            self.metrics.rejected.labels("unknown", "unknown_provider").inc()
            raise NotFound(f"no webhook provider {name!r}; known: {', '.join(self.registry.names())}",
                           field="provider")
        return provider

    async def receive(self, provider: WebhookProvider, body: bytes, headers: Mapping[str, str],
                      connection_id: str | None = None) -> Accepted:
        started = time.perf_counter()
        try:
            accepted = await self._receive(provider, body, headers, connection_id)
        except WebhookRejected as exc:
            self.metrics.rejected.labels(provider.name, exc.reason).inc()
            raise
        except NotFound:
            self.metrics.rejected.labels(provider.name, "unknown_connection").inc()
            raise
        self.metrics.latency.labels(provider.name).observe(time.perf_counter() - started)
        fresh = sum(1 for s in accepted.stored if s.event_id is not None)
        if fresh:
            self.metrics.received.labels(provider.name).inc(fresh)
        if fresh < len(accepted.stored):
            self.metrics.duplicates.labels(provider.name).inc(len(accepted.stored) - fresh)
        return accepted

    async def _receive(self, provider: WebhookProvider, body: bytes, headers: Mapping[str, str],
                       connection_id: str | None) -> Accepted:
        if len(body) > self.max_body_bytes:
            raise MalformedDelivery("too_large", f"the body exceeds {self.max_body_bytes} bytes "
                                                 "(setting IONFLUX_WEBHOOK_MAX_BODY_BYTES)")
        fixed = await self._route_by_id(provider, connection_id) if connection_id else None
        if fixed is None and provider.needs_connection_path:
            raise NotFound(f"{provider.name} deliveries name no account: send them to "
                           f"/webhooks/{provider.name}/{{connection_id}}", field="connection_id")
        secrets = await self.secrets(provider, fixed)
        await provider.verify(body, headers, secrets, time.time())
        parts = provider.parse(body, headers)
        kept = {k: v for k, v in headers.items() if k not in DROPPED_HEADERS and k not in provider.signature_headers}
        records: list[InboxRecord] = []
        routed: list[InboundPart] = []
        for part in parts:
            route = fixed or await self._route_by_account(provider, part.account)
            if route is None:
                log.info("webhook part for an unknown account skipped",
                         extra={"provider": provider.name, "account": part.account})
                continue
            records.append(self._record(provider, part, route, kept))
            routed.append(part)
        if not records:
            raise NotFound(f"no {provider.name} connection for this delivery's account", field="account")
        stored = await self.inbox.submit(records)
        if isinstance(provider, SnsWebhooks) and provider.auto_confirm:
            for part, result in zip(routed, stored, strict=True):
                if part.topic == "SubscriptionConfirmation" and result.event_id is not None:
                    self._after_ack(self._confirm(provider, part.body, result.id))
        return Accepted(stored)

    def _record(self, provider: WebhookProvider, part: InboundPart, route: Route,
                headers: dict[str, str]) -> InboxRecord:
        data = {"provider": provider.name, "topic": part.topic, "delivery_id": part.delivery_id,
                "account": part.account, "connection_id": route.connection_id, "payload": part.payload}
        return InboxRecord(
            workspace_id=route.workspace_id, provider=provider.name, connection_id=route.connection_id,
            account=part.account, delivery_id=part.delivery_id, dedupe_key=part.dedupe_key, topic=part.topic,
            event_type=part.event_type, subject=part.subject, headers=headers, body=part.body, data=data,
        )

    async def handshake(self, provider: WebhookProvider, query: Mapping[str, str],
                        connection_id: str | None = None) -> Handshake | None:
        route = await self._route_by_id(provider, connection_id) if connection_id else None
        return provider.handshake(query, await self.secrets(provider, route))

    async def secrets(self, provider: WebhookProvider, route: Route | None) -> Mapping[str, str]:
        if not provider.needs_secrets:
            return {}
        owner = route.workspace_id if route else PLATFORM_WORKSPACE
        name = route.credential_name if route else "default"
        key = (owner, provider.vault_provider, name)
        return await self._secrets.get(key, lambda: self._load_secrets(provider, owner, name))

    async def _load_secrets(self, provider: WebhookProvider, owner: str, name: str) -> Mapping[str, str]:
        try:
            resolved = await self.platform.vault.resolve(owner, provider.vault_provider, name)
        except (NotFound, IonfluxError):
            raise NotConfigured("not_configured", f"no {provider.vault_provider} webhook secret is configured "
                                                  f"(IONFLUX_{provider.vault_provider.upper()}_…)") from None
        return dict(resolved.secrets)

    async def _route_by_id(self, provider: WebhookProvider, connection_id: str | None) -> Route:
        return await self._route(provider, "id", connection_id or "")

    async def _route_by_account(self, provider: WebhookProvider, account: str | None) -> Route | None:
        if not account:
            return None
        try:
            return await self._route(provider, "account", account)
        except NotFound:
            return None

    async def _route(self, provider: WebhookProvider, by: str, value: str) -> Route:
        return await self._routes.get((provider.name, f"{by}:{value}"), lambda: self._load_route(provider, by, value))

    async def _load_route(self, provider: WebhookProvider, by: str, value: str) -> Route:
        where = Connection.id == value if by == "id" else Connection.external_id == value
        async with self.platform.db.system() as session:
            row = (await session.execute(
                select(Connection.id, Connection.workspace_id, Connection.credential_name)
                .where(Connection.provider == provider.name, where))).first()
        if row is None:
            raise NotFound(f"no {provider.name} connection {value!r}", field="connection_id")
        return Route(row.id, row.workspace_id, row.credential_name)

    async def _confirm(self, provider: SnsWebhooks, body: bytes, delivery_id: str) -> None:
        try:
            await provider.confirm(body)
            outcome = None
        except Exception as exc:
            outcome = f"subscription not confirmed: {type(exc).__name__}: {exc}"[:1000]
            log.warning("SNS subscription confirmation failed", extra={"delivery": delivery_id})
        if outcome is None:
            return
        async with self.platform.db.system() as session:
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
                                  .values(error=outcome).execution_options(synchronize_session=False))

    def _after_ack(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Wait for background work (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
