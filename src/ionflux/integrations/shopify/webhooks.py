"""Shopify deliveries as events: the core verifier (HMAC with both secrets, freshness) plus our mapper.

The mapper turns an `orders/*` or `products/*` payload into the typed record (normalise.py) and keeps
the raw payload beside it, with the delivery's ids and `X-Shopify-Triggered-At`. Customer fields are
redacted unless the owning workspace enabled PII. The pipeline calls `verify` (async) right before
`parse` (sync), so the workspace's PII choice for the shop is loaded in `verify` and read in `parse`;
a choice not loaded (evicted in between) reads as "redact", the safe side.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.models import Connection
from ionflux.core.webhooks.base import InboundPart, header, json_body
from ionflux.core.webhooks.shopify import SHOP_RE, ShopifyWebhooks
from ionflux.integrations.shopify.models import ShopifyWorkspaceSettings
from ionflux.integrations.shopify.normalise import order_from_rest, product_from_rest, redact_payload

log = logging.getLogger("ionflux.shopify")
PRIVACY_TOPICS = frozenset({"customers/data_request", "customers/redact", "shop/redact"})


def shape_payload(topic: str, raw: Any, *, pii: bool, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The event's `data.payload`: the typed record (when the topic has one), the raw payload, delivery facts."""
    h = headers or {}
    # A request to erase a customer never publishes that customer's contact data (its own stored event
    # could not be rewritten while it is being published); the consumer reads the raw request from the inbox.
    pii = pii and topic != "customers/redact"
    out: dict[str, Any] = {
        "triggered_at": header(h, "x-shopify-triggered-at", "shopify-triggered-at"),
        "event_id": header(h, "x-shopify-event-id", "shopify-event-id"),
        "webhook_id": header(h, "x-shopify-webhook-id", "shopify-webhook-id"),
        "api_version": header(h, "x-shopify-api-version", "shopify-api-version"),
        "pii_redacted": not pii,
    }
    resource = topic.split("/", 1)[0]
    try:
        if resource == "orders" and isinstance(raw, dict):
            out["order"] = order_from_rest(raw, pii=pii).model_dump()
        elif resource == "products" and isinstance(raw, dict):
            out["product"] = product_from_rest(raw).model_dump()
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        # Signed by Shopify and acknowledged: publish it raw rather than make Shopify retry a shape we misread.
        out["normalise_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    out["raw"] = raw if pii else _redact_any(topic, raw)
    return out


def _redact_any(topic: str, raw: Any) -> Any:
    if topic in PRIVACY_TOPICS and isinstance(raw, dict) and isinstance(raw.get("customer"), dict):
        return {**raw, "customer": {"id": raw["customer"].get("id")}}
    return redact_payload(raw)


class PiiPolicy:
    """Which shops' workspaces enabled PII, loaded on demand and kept `ttl` seconds."""

    def __init__(self, db: Database, ttl: float = 10.0) -> None:
        self.db, self.ttl = db, ttl
        self._known: dict[str, tuple[float, bool]] = {}

    async def load(self, shop: str) -> bool:
        now = time.monotonic()
        cached = self._known.get(shop)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.db.system() as session:
            workspace = await session.scalar(select(Connection.workspace_id).where(
                Connection.provider == "shopify", Connection.external_id == shop))
            enabled = bool(workspace and await session.scalar(select(ShopifyWorkspaceSettings.pii_enabled).where(
                ShopifyWorkspaceSettings.workspace_id == workspace)))
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[shop] = (now + self.ttl, enabled)
        return enabled

    def cached(self, shop: str) -> bool:
        entry = self._known.get(shop)
        return bool(entry and entry[1])

    def forget(self, workspace_id: str | None = None) -> None:
        self._known.clear()


class ShopifyEventWebhooks(ShopifyWebhooks):
    """Registered in place of the core Shopify provider while the Shopify service runs."""

    def __init__(self, policy: PiiPolicy, tolerance: float = 12 * 3600) -> None:
        super().__init__(tolerance)
        self.policy = policy

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        await super().verify(body, headers, secrets, now)
        shop = header(headers, "x-shopify-shop-domain", "shopify-shop-domain")
        if shop and SHOP_RE.fullmatch(shop):
            await self.policy.load(shop.lower())

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        parts = super().parse(body, headers)
        return [replace(p, payload=shape_payload(p.topic, p.payload, pii=self.policy.cached(p.account or ""),
                                                 headers=headers)) for p in parts]

    def payload(self, body: bytes) -> Any:
        """A replayed delivery (no headers kept for the topic here): the raw payload, redacted."""
        return {"raw": redact_payload(json_body(body)), "pii_redacted": True, "replayed": True}
