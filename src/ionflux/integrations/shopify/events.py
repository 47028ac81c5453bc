"""What the Shopify service does with the webhook events the pipeline published (an idempotent consumer).

Everything happens in the consumer's transaction, so acting and "processed" commit together:
orders/products upserts, shop/update, app/uninstalled (revoke, delete tokens, stop syncs) and the
mandatory privacy topics (record, act, publish what was done). Tokens are deleted as the vault's
credential row in this same transaction, so a revoked connection never keeps a usable token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import Event, emit
from ionflux.core.models import Connection, Credential, utcnow
from ionflux.core.webhooks.base import json_body
from ionflux.core.webhooks.models import WebhookDelivery
from ionflux.integrations.shopify.models import (
    ShopifyOrder,
    ShopifyPrivacyRequest,
    ShopifyProduct,
    ShopifyShop,
    ShopifySyncRun,
)
from ionflux.integrations.shopify.normalise import Order, Product
from ionflux.integrations.shopify.privacy import Subject, redact_deliveries, redact_events
from ionflux.integrations.shopify.records import SOURCE, record_webhook_versions, redact_customer

log = logging.getLogger("ionflux.shopify")


class ShopifyWebhookConsumer:
    name = "shopify.webhooks"
    patterns = ["platform.shopify.events.#"]

    def __init__(self, on_revoked: Callable[[str], None]) -> None:
        self.on_revoked = on_revoked  # stops this process's syncs of a connection (after commit is fine)

    async def __call__(self, event: Event, session: AsyncSession) -> None:
        await self.batch([event], session)

    async def batch(self, events: list[Event], session: AsyncSession) -> None:
        """Events in order; consecutive order/product versions are written together (one statement per table)."""
        versions: list[tuple[str, Order | Product]] = []
        for event in events:
            data = event.data
            if data.get("provider") != "shopify" or "webhook_delivery_id" not in data or data.get("replay_of"):
                continue  # not a delivery (our own events), or a replay (acted on the first time)
            payload = data.get("payload") or {}
            connection_id = str(data.get("connection_id"))
            if "order" in payload:
                versions.append((connection_id, Order.model_validate(payload["order"])))
            elif "product" in payload:
                versions.append((connection_id, Product.model_validate(payload["product"])))
            else:
                if versions:  # written first: what comes next may read them (a privacy request reads orders)
                    await record_webhook_versions(session, versions)
                    versions = []
                await self._act(session, event, str(data.get("topic")), connection_id, str(data.get("account")))
        if versions:
            await record_webhook_versions(session, versions)

    async def _act(self, session: AsyncSession, event: Event, topic: str, connection_id: str, shop: str) -> None:
        data = event.data
        if topic == "shop/update":
            await self._shop_update(session, connection_id, (data.get("payload") or {}).get("raw") or {})
        elif topic == "app/uninstalled":
            await self._uninstall(session, connection_id, shop, "app_uninstalled")
        elif topic in ("customers/data_request", "customers/redact", "shop/redact"):
            raw = await self._raw(session, str(data["webhook_delivery_id"]))
            await self._privacy(session, event, topic, connection_id, shop, raw)

    async def _shop_update(self, session: AsyncSession, connection_id: str, raw: dict[str, Any]) -> None:
        row = await session.get(ShopifyShop, connection_id)
        if row is not None:
            row.name = raw.get("name", row.name)
            row.currency = raw.get("currency", row.currency)
            row.iana_timezone = raw.get("iana_timezone", row.iana_timezone)

    async def _uninstall(self, session: AsyncSession, connection_id: str, shop: str, reason: str) -> None:
        conn = await session.get(Connection, connection_id)
        if conn is None:
            return
        was = conn.status
        conn.status, conn.token_expires_at = "revoked", None
        if conn.credential_name.startswith("oauth-"):  # the connection's tokens, never an app secret
            await session.execute(delete(Credential).where(Credential.provider == "shopify",
                                                           Credential.name == conn.credential_name)
                                  .execution_options(synchronize_session=False))
        await session.execute(update(ShopifySyncRun).where(ShopifySyncRun.connection_id == connection_id,
                                                           ShopifySyncRun.status == "running")
                              .values(status="stopped", error=reason, finished_at=utcnow())
                              .execution_options(synchronize_session=False))
        if was != "revoked":
            emit(session, type="platform.shopify.events.connections.revoked", subject=connection_id, source=SOURCE,
                 data={"connection_id": connection_id, "external_id": shop, "reason": reason})
        self.on_revoked(connection_id)
        log.info("shopify connection revoked", extra={"connection_id": connection_id, "reason": reason})

    async def _raw(self, session: AsyncSession, delivery_id: str) -> dict[str, Any]:
        """The unredacted payload, from the inbox (the event may carry a redacted one)."""
        body = await session.scalar(select(WebhookDelivery.body).where(WebhookDelivery.id == delivery_id))
        value = json_body(body) if body else {}
        return value if isinstance(value, dict) else {}

    async def _privacy(self, session: AsyncSession, event: Event, topic: str, connection_id: str, shop: str,
                       raw: dict[str, Any]) -> None:
        customer = raw.get("customer") if isinstance(raw.get("customer"), dict) else {}
        assert isinstance(customer, dict)
        customer_id = str(customer["id"]) if customer.get("id") is not None else None
        email = customer.get("email")
        if topic == "shop/redact":
            outcome = await self._shop_redact(session, connection_id, shop, event)
            action = "shop_redacted"
        else:
            listed = raw.get("orders_requested" if topic == "customers/data_request" else "orders_to_redact") or []
            orders = await self._customer_orders(session, connection_id, customer_id, email,
                                                 [str(o) for o in listed])
            if topic == "customers/data_request":
                outcome = {"orders": [o.shopify_id for o in orders], "fields": ["customer", "line_items", "totals"]}
                action = "data_request_compiled"
            else:
                for order in orders:
                    order.data, order.customer_id = redact_customer(order.data), None
                subject = Subject.of(customer_id, [*listed, *(o.shopify_id for o in orders)], email,
                                     customer.get("phone"))
                outcome = {"orders_redacted": len(orders),
                           "webhook_deliveries_redacted": await redact_deliveries(session, connection_id, shop,
                                                                                  subject),
                           "events_redacted": await redact_events(session, connection_id, subject)}
                action = "customer_redacted"
        session.add(ShopifyPrivacyRequest(event_id=event.id, connection_id=connection_id, shop_domain=shop,
                                          topic=topic, customer_id=customer_id, outcome=outcome,
                                          completed_at=utcnow()))
        emit(session, type=f"platform.shopify.events.privacy.{action}", subject=shop, source=SOURCE,
             data={"connection_id": connection_id, "shop": shop, "topic": topic, "customer_id": customer_id,
                   "request_event_id": event.id, **outcome})

    async def _customer_orders(self, session: AsyncSession, connection_id: str, customer_id: str | None,
                               email: Any, listed: list[str]) -> list[ShopifyOrder]:
        rows = (await session.scalars(select(ShopifyOrder).where(ShopifyOrder.connection_id == connection_id))).all()
        found = []
        for row in rows:
            stored = (row.data or {}).get("customer") or {}
            if row.shopify_id in listed or (customer_id and row.customer_id == customer_id) or (
                    email and stored.get("email") == email):
                found.append(row)
        return found

    async def _shop_redact(self, session: AsyncSession, connection_id: str, shop: str, event: Event) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for model in (ShopifyOrder, ShopifyProduct):
            result = await session.execute(delete(model).where(model.connection_id == connection_id)
                                           .execution_options(synchronize_session=False))
            counts[f"{model.__tablename__.removeprefix('shopify_')}_deleted"] = int(getattr(result, "rowcount", 0))
        await session.execute(delete(ShopifySyncRun).where(ShopifySyncRun.connection_id == connection_id)
                              .execution_options(synchronize_session=False))
        await session.execute(delete(ShopifyShop).where(ShopifyShop.connection_id == connection_id)
                              .execution_options(synchronize_session=False))
        inbox = await session.execute(delete(WebhookDelivery).where(
            WebhookDelivery.connection_id == connection_id, WebhookDelivery.topic != "shop/redact")
            .execution_options(synchronize_session=False))
        counts["webhook_deliveries_deleted"] = int(getattr(inbox, "rowcount", 0))
        await self._uninstall(session, connection_id, shop, "shop_redact")
        return counts
