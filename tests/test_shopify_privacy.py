"""customers/redact reaches every stored copy: the inbox's raw webhook bodies and the stored events,
not only the local orders; another customer's copies are left as they were."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from ionflux.core.models import OutboxEvent
from ionflux.core.webhooks.models import WebhookDelivery
from ionflux.integrations.shopify.privacy import REDACTED_HEADER, Subject, concerns, scrub
from tests.shopify_env import SHOP, ShopifyEnv, make_env_fixture

shopify = make_env_fixture()


def _pii(customer: dict[str, Any]) -> list[str]:
    return [customer["email"], customer["first_name"], customer["last_name"]]


def _other_customer_order(shopify: ShopifyEnv, first: dict[str, Any]) -> dict[str, Any]:
    mine = [*_pii(first["customer"]), first["customer"]["phone"]]
    for _ in range(200):
        order = shopify.sim.create_order(SHOP)
        theirs = [*_pii(order["customer"]), order["customer"]["phone"]]
        if order["customer"]["id"] != first["customer"]["id"] and not set(mine) & set(theirs):
            return order
    raise AssertionError("the simulator made no order for another customer")


async def _stored(shopify: ShopifyEnv) -> tuple[list[WebhookDelivery], list[OutboxEvent]]:
    async with shopify.platform.db.tenant(shopify.workspace.id) as session:
        deliveries = list((await session.scalars(select(WebhookDelivery))).all())
        events = list((await session.scalars(select(OutboxEvent))).all())
    return deliveries, events


async def test_customer_redact_scrubs_inbox_bodies_and_stored_events(shopify: ShopifyEnv) -> None:
    await shopify.connect()
    await shopify.client.put("/v1/shopify/settings", json={"pii_enabled": True}, headers=shopify.workspace.headers)
    order = shopify.sim.create_order(SHOP)
    other = _other_customer_order(shopify, order)
    for item in (order, other):
        [result] = await shopify.sim.emit(SHOP, "orders/create", item)
        assert result.delivered
    await shopify.until(lambda: _count(shopify, "platform.shopify.events.orders.created", 2))
    # Redaction requests come long after the orders: their events have been published by then.
    await shopify.until(lambda: _all_published(shopify))
    deliveries, events = await _stored(shopify)
    target = _pii(order["customer"])
    assert all(any(v in d.body.decode() for d in deliveries) for v in target)  # stored unredacted today
    assert any(order["customer"]["email"] in json.dumps(e.data) for e in events)
    before = {d.id: d.body for d in deliveries if other["customer"]["email"] in d.body.decode()}
    assert len(before) == 1

    redact = {"shop_id": 1, "shop_domain": SHOP, "orders_to_redact": [order["id"]],
              "customer": {"id": order["customer"]["id"], "email": order["customer"]["email"],
                           "phone": order["customer"]["phone"]}}
    assert (await shopify.sim.deliver("https://ionflux.test/webhooks/shopify", SHOP, "customers/redact",
                                      redact)).delivered
    [done] = await shopify.until(lambda: shopify.events("platform.shopify.events.privacy.customer_redacted"))
    assert done.data["orders_redacted"] == 1
    assert done.data["webhook_deliveries_redacted"] >= 2 and done.data["events_redacted"] >= 1

    deliveries, events = await _stored(shopify)
    for value in target:
        assert not [d.topic for d in deliveries if value in d.body.decode()], value
        assert not [e.type for e in events if value in json.dumps(e.data)], value
    redacted = [d for d in deliveries if d.topic == "orders/create" and d.id not in before]
    assert len(redacted) == 1 and redacted[0].headers[REDACTED_HEADER] == "customers/redact"
    kept = json.loads(redacted[0].body)
    assert kept["id"] == order["id"] and kept["customer"] == {"id": order["customer"]["id"]}
    assert kept["line_items"][0]["price"] == order["line_items"][0]["price"]
    # The other customer's delivery and event are untouched.
    assert {d.id: d.body for d in deliveries if d.id in before} == before
    assert all(REDACTED_HEADER not in d.headers for d in deliveries if d.id in before)
    [theirs] = [e for e in events if other["customer"]["email"] in json.dumps(e.data)]
    assert theirs.data["payload"]["order"]["customer"]["email"] == other["customer"]["email"]


async def _all_published(shopify: ShopifyEnv) -> bool:
    return all(e.status == "published" for e in await shopify.events())


async def _count(shopify: ShopifyEnv, type_: str, n: int) -> bool:
    return len(await shopify.events(type_)) >= n


def test_matching_and_scrubbing_rules() -> None:
    subject = Subject.of("7", ["gid://shopify/Order/42"], "Ann@Example.com", None)
    assert subject.order_ids == {"42"}
    assert concerns({"customer": {"id": 7}}, subject)
    assert concerns({"order_id": 42}, subject) and concerns({"id": 42}, subject, order_id=42)
    assert concerns({"note": "ann@example.com"}, subject)
    assert not concerns({"customer": {"id": 8}, "id": 42, "email": "bob@example.com"}, subject)
    nested = {"fulfillments": [{"destination": {"first_name": "Ann"}, "email": "x"}], "customer": {"id": 7, "x": 1}}
    assert scrub(nested) == {"fulfillments": [{}], "customer": {"id": 7}}
