"""Shopify: base64 HMAC-SHA256 of the raw body with the app's client secret (API_FACTS §1).

Topic mapping: `orders/create` -> `platform.shopify.events.orders.created`. Events are named as facts
(DESIGN's `orders.created`), so Shopify's three present-tense verbs become past tense (create, update,
delete); every other action (paid, cancelled, fulfilled, uninstalled, redact, data_request, …) is
already a past participle or a noun and is kept. Sub-paths join with '_' (`a/b/c` -> `a.b_c`). The
provider's own topic is always in the event's `data.topic`.

Replays: Shopify signs only the body, so ids and `X-Shopify-Triggered-At` are not authenticated. A
delivery triggered longer ago than the tolerance (12 h, above Shopify's 4 h retry horizon) is refused;
retries share `X-Shopify-Event-Id`, which is the dedupe key.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from ionflux.core.webhooks.base import (
    InboundPart,
    MalformedDelivery,
    SignatureInvalid,
    WebhookProvider,
    as_bytes,
    bounded,
    check_age,
    equal,
    header,
    hmac_sha256,
    json_body,
    keys_from,
    parse_time,
    topic,
)

SHOP_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com$")  # anchored, as Shopify's security check
PAST_TENSE = {"create": "created", "update": "updated", "delete": "deleted"}


def shopify_topic(raw: str) -> str:
    resource, _, action = raw.partition("/")
    action = action.replace("/", "_") or "changed"
    return topic("shopify", resource, PAST_TENSE.get(action, action))


class ShopifyWebhooks(WebhookProvider):
    name = "shopify"
    vault_provider = "shopify"
    signature_headers = frozenset({"x-shopify-hmac-sha256", "shopify-hmac-sha256"})
    secret_fields = ("client_secret", "client_secret_previous")  # both are tried during a rotation

    def __init__(self, tolerance: float = 12 * 3600) -> None:
        self.tolerance = tolerance

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        given = header(headers, "x-shopify-hmac-sha256", "shopify-hmac-sha256")
        if not given:
            raise SignatureInvalid("signature", "X-Shopify-Hmac-Sha256 is missing")
        try:
            signature = base64.b64decode(as_bytes(given), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid("signature", "X-Shopify-Hmac-Sha256 is not base64") from None
        if not any(equal(hmac_sha256(key, body), signature) for key in keys_from(secrets, *self.secret_fields)):
            raise SignatureInvalid("signature", "X-Shopify-Hmac-Sha256 does not match the body")
        triggered = header(headers, "x-shopify-triggered-at", "shopify-triggered-at")
        moment = parse_time(triggered) if triggered else None
        if moment is not None:
            check_age(moment.timestamp(), now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        raw_topic = header(headers, "x-shopify-topic", "shopify-topic")
        shop = header(headers, "x-shopify-shop-domain", "shopify-shop-domain")
        webhook_id = header(headers, "x-shopify-webhook-id", "shopify-webhook-id")
        if not raw_topic or not shop or not webhook_id:
            raise MalformedDelivery("malformed", "X-Shopify-Topic, X-Shopify-Shop-Domain and X-Shopify-Webhook-Id "
                                                 "are required")
        if not SHOP_RE.fullmatch(shop):
            raise MalformedDelivery("malformed", "X-Shopify-Shop-Domain is not a *.myshopify.com domain")
        event_id = header(headers, "x-shopify-event-id", "shopify-event-id")
        payload = json_body(body)
        return [InboundPart(
            account=shop.lower(),
            delivery_id=bounded(webhook_id, "X-Shopify-Webhook-Id"),
            # Retries of one event share the event id; several subscriptions to one topic have names.
            dedupe_key=bounded(f"{event_id or webhook_id}:{raw_topic}:{header(headers, 'x-shopify-name') or ''}",
                               "dedupe key"),
            topic=bounded(raw_topic, "X-Shopify-Topic", 200),
            event_type=shopify_topic(raw_topic),
            body=body,
            payload=payload,
            subject=shop.lower(),
        )]
