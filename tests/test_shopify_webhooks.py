"""Shopify webhooks through the shared pipeline: typed events, PII redaction, forgery, duplicates,
uninstall clean-up and the mandatory privacy topics, with deliveries signed by the simulator."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from ionflux.core.bus import Event
from ionflux.core.models import Connection, Credential
from ionflux.core.webhooks.shopify import shopify_topic
from ionflux.integrations.shopify.events import ShopifyWebhookConsumer
from ionflux.integrations.shopify.models import ShopifyOrder, ShopifyPrivacyRequest, ShopifyShop
from ionflux.integrations.shopify.queries import WEBHOOK_TOPICS
from ionflux.integrations.shopify.webhooks import shape_payload
from tests.shopify_env import API_SECRET, SHOP, ShopifyEnv, make_env_fixture

shopify = make_env_fixture()
TOPICS = {"orders/create": "orders.created", "orders/updated": "orders.updated", "orders/paid": "orders.paid",
          "orders/fulfilled": "orders.fulfilled", "products/create": "products.created",
          "products/update": "products.updated", "shop/update": "shop.updated", "app/uninstalled": "app.uninstalled"}


def signed(body: bytes, topic: str, *, secret: str = API_SECRET, event_id: str | None = None) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
            .decode(),
            "X-Shopify-Webhook-Id": str(uuid.uuid4()), "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(), "X-Shopify-API-Version": "2026-07"}


def test_the_issue_topic_names_are_the_event_types() -> None:
    assert set(TOPICS) == set(WEBHOOK_TOPICS)
    for topic, suffix in TOPICS.items():
        assert shopify_topic(topic) == f"platform.shopify.events.{suffix}"


async def test_an_order_webhook_becomes_a_typed_event_without_customer_pii(shopify: ShopifyEnv) -> None:
    await shopify.connect()
    order = shopify.sim.create_order(SHOP)
    [result] = await shopify.sim.emit(SHOP, "orders/create", order)
    assert result.delivered
    [event] = await shopify.until(lambda: shopify.events("platform.shopify.events.orders.created"))
    payload = event.data["payload"]
    typed = payload["order"]
    assert typed["id"] == str(order["id"]) and typed["name"] == order["name"]
    assert typed["total_price"] == order["total_price"] and isinstance(typed["total_price"], str)
    assert typed["currency"] == "USD" and typed["line_items"][0]["price"] == order["line_items"][0]["price"]
    assert typed["customer"] == {"id": str(order["customer"]["id"]), "email": None, "first_name": None,
                                 "last_name": None, "phone": None}
    assert payload["pii_redacted"] is True and payload["triggered_at"] and payload["event_id"]
    raw = payload["raw"]
    assert "email" not in raw and "shipping_address" not in raw and raw["customer"] == {"id": order["customer"]["id"]}
    assert order["customer"]["email"] not in json.dumps(event.data)
    # The local copy is kept, and marked as published (reconciliation will not publish it again).
    row = await shopify.until(lambda: _order_row(shopify, str(order["id"])))
    assert row.published_updated_at is not None


async def test_with_pii_enabled_customer_fields_reach_the_event(shopify: ShopifyEnv) -> None:
    await shopify.connect()
    put = await shopify.client.put("/v1/shopify/settings", json={"pii_enabled": True},
                                   headers=shopify.workspace.headers)
    assert put.status_code == 200
    order = shopify.sim.create_order(SHOP)
    await shopify.sim.emit(SHOP, "orders/create", order)
    [event] = await shopify.until(lambda: shopify.events("platform.shopify.events.orders.created"))
    assert event.data["payload"]["order"]["customer"]["email"] == order["customer"]["email"]
    assert event.data["payload"]["raw"]["email"] == order["email"]


async def test_a_forged_webhook_is_refused_with_401_and_publishes_nothing(shopify: ShopifyEnv) -> None:
    await shopify.connect()
    body = json.dumps(shopify.sim.create_order(SHOP)).encode()
    for headers in (signed(body, "orders/create", secret="wrong-secret"),
                    {**signed(body, "orders/create"), "X-Shopify-Hmac-Sha256": "AAAA"}):
        response = await shopify.client.post("/webhooks/shopify", content=body, headers=headers)
        assert response.status_code == 401
    tampered = await shopify.client.post("/webhooks/shopify", content=body.replace(b"USD", b"EUR"),
                                         headers=signed(body, "orders/create"))
    assert tampered.status_code == 401
    assert not await shopify.events("platform.shopify.events.orders.created")


async def test_a_duplicate_delivery_is_published_once(shopify: ShopifyEnv) -> None:
    await shopify.connect()
    shopify.sim.duplicate_rate = 1.0  # every delivery is sent a second time, as Shopify sometimes does
    order = shopify.sim.create_order(SHOP)
    await shopify.sim.emit(SHOP, "orders/create", order)
    # A retry of the same event under a new delivery id is the same event too.
    body = json.dumps(order).encode()
    event_id = shopify.sim.deliveries[-1][2]
    first = await shopify.until(lambda: shopify.events("platform.shopify.events.orders.created"))
    retry = await shopify.client.post("/webhooks/shopify", content=body,
                                      headers=signed(body, "orders/create", event_id=first[0].data["payload"]
                                                     ["event_id"]))
    assert retry.status_code == 200 and retry.json()["status"] == "duplicate"
    assert shopify.sim.stats["webhooks_duplicated"] == 1 and event_id.delivered
    assert len(await shopify.events("platform.shopify.events.orders.created")) == 1


async def test_uninstall_revokes_deletes_tokens_stops_syncs_and_publishes(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    await shopify.sim.uninstall(SHOP)
    await shopify.until(lambda: shopify.events("platform.shopify.events.app.uninstalled"))
    revoked = await shopify.until(lambda: shopify.events("platform.shopify.events.connections.revoked"))
    assert revoked[0].data["reason"] == "app_uninstalled"
    async with shopify.platform.db.system() as session:
        conn = await session.get(Connection, connection["id"])
        tokens = await session.scalar(select(Credential).where(Credential.name == f"oauth-{connection['id']}"))
    assert conn is not None and conn.status == "revoked" and tokens is None
    sync = await shopify.client.post(f"/v1/shopify/connections/{connection['id']}/sync",
                                     headers=shopify.workspace.headers)
    assert sync.status_code == 409


async def test_privacy_topics_are_verified_recorded_acted_on_and_published(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    await shopify.client.put("/v1/shopify/settings", json={"pii_enabled": True}, headers=shopify.workspace.headers)
    order = shopify.sim.create_order(SHOP)
    await shopify.sim.emit(SHOP, "orders/create", order)
    await shopify.until(lambda: _order_row(shopify, str(order["id"])))
    customer = order["customer"]
    # Privacy requests carry personal data too: with PII off again, the events carry the customer id only.
    await shopify.client.put("/v1/shopify/settings", json={"pii_enabled": False}, headers=shopify.workspace.headers)
    uri = "https://ionflux.test/webhooks/shopify"
    request = {"shop_id": 1, "shop_domain": SHOP, "orders_requested": [order["id"]],
               "customer": {"id": customer["id"], "email": customer["email"], "phone": customer["phone"]},
               "data_request": {"id": 9999}}
    forged = await shopify.client.post("/webhooks/shopify", content=json.dumps(request).encode(),
                                       headers=signed(b"{}", "customers/data_request"))
    assert forged.status_code == 401

    assert (await shopify.sim.deliver(uri, SHOP, "customers/data_request", request)).delivered
    compiled = await shopify.until(lambda: shopify.events("platform.shopify.events.privacy.data_request_compiled"))
    assert compiled[0].data["orders"] == [str(order["id"])]

    redact = {"shop_id": 1, "shop_domain": SHOP, "customer": {"id": customer["id"], "email": customer["email"]},
              "orders_to_redact": [order["id"]]}
    assert (await shopify.sim.deliver(uri, SHOP, "customers/redact", redact)).delivered
    await shopify.until(lambda: shopify.events("platform.shopify.events.privacy.customer_redacted"))
    row = await _order_row(shopify, str(order["id"]))
    assert row is not None and row.customer_id is None and row.data["customer"]["email"] is None

    assert (await shopify.sim.deliver(uri, SHOP, "shop/redact", {"shop_id": 1, "shop_domain": SHOP})).delivered
    done = await shopify.until(lambda: shopify.events("platform.shopify.events.privacy.shop_redacted"))
    assert done[0].data["orders_deleted"] == 1
    async with shopify.platform.db.system() as session:
        assert await session.get(ShopifyShop, connection["id"]) is None
        assert not (await session.scalars(select(ShopifyOrder))).all()
        recorded = (await session.scalars(select(ShopifyPrivacyRequest))).all()
        assert sorted(r.topic for r in recorded) == ["customers/data_request", "customers/redact", "shop/redact"]
        conn = await session.get(Connection, connection["id"])
        assert conn is not None and conn.status == "revoked"
    for topic in ("customers.data_request", "customers.redact", "shop.redact"):
        [published] = await shopify.events(f"platform.shopify.events.{topic}")
        assert customer["email"] not in json.dumps(published.data)


def test_a_payload_that_does_not_normalise_is_still_published_raw() -> None:
    shaped = shape_payload("orders/create", {"id": 1, "total_price": "abc"}, pii=False)
    assert "order" not in shaped and shaped["normalise_error"] and shaped["raw"]["id"] == 1


async def _order_row(shopify: ShopifyEnv, order_id: str) -> ShopifyOrder | None:
    async with shopify.platform.db.system() as session:
        row: ShopifyOrder | None = await session.scalar(select(ShopifyOrder).where(ShopifyOrder.shopify_id == order_id))
    return row



async def test_a_consumer_batch_of_versions_keeps_the_newest_and_reads_its_own_writes(
        shopify: ShopifyEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer takes a chunk of deliveries at once: versions of one order out of order in the same batch
    end at the newest, and a privacy request later in the batch sees the orders written before it."""
    connection = await shopify.connect()
    raw_request = {"customer": {"id": 424242}, "orders_requested": []}

    async def raw(self: object, session: object, delivery_id: str) -> dict[str, object]:
        return raw_request  # the request's raw body (these deliveries were made here, not through the inbox)
    monkeypatch.setattr(ShopifyWebhookConsumer, "_raw", raw)
    order = shopify.sim.create_order(SHOP)

    def delivery(topic: str, raw: dict[str, object]) -> Event:
        return Event(type=shopify_topic(topic), workspace_id=shopify.workspace.id, data={
            "provider": "shopify", "topic": topic, "connection_id": connection["id"], "account": SHOP,
            "webhook_delivery_id": str(uuid.uuid4()), "payload": shape_payload(topic, raw, pii=False)})

    versions = [dict(order, total_price=price, updated_at=f"2030-01-0{day}T00:00:00Z",
                     customer=dict(order["customer"], id=424242))
                for price, day in (("20.00", 2), ("10.00", 1), ("30.00", 3), ("25.00", 2))]
    request = delivery("customers/data_request", raw_request)
    events = [*(delivery("orders/updated", v) for v in versions), request]
    assert await shopify.platform.bus.transport.publish(events) == [None] * len(events)
    row = await _order_row(shopify, str(order["id"]))
    assert row is not None and row.data["total_price"] == "30.00"
    assert row.source_updated_at.replace(tzinfo=UTC) == datetime(2030, 1, 3, tzinfo=UTC)
    assert row.published_updated_at is not None
    assert row.published_updated_at.replace(tzinfo=UTC) == datetime(2030, 1, 3, tzinfo=UTC)
    async with shopify.platform.db.system() as session:
        compiled = await session.scalar(
            select(ShopifyPrivacyRequest).where(ShopifyPrivacyRequest.event_id == request.id))
    assert compiled is not None and compiled.outcome["orders"] == [str(order["id"])]


async def test_product_and_shop_webhooks_update_the_local_copies(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    product = dict(shopify.sim.state(SHOP).data.products[0], title="Renamed Shirt", updated_at="2030-01-01T00:00:00Z")
    await shopify.sim.emit(SHOP, "products/update", product)
    [event] = await shopify.until(lambda: shopify.events("platform.shopify.events.products.updated"))
    assert event.data["payload"]["product"]["title"] == "Renamed Shirt"
    assert event.data["payload"]["product"]["variants"][0]["price"] == product["variants"][0]["price"]
    shop = dict(shopify.sim.state(SHOP).data.shop_payload(), name="Acme Two", iana_timezone="Europe/Lisbon")
    await shopify.sim.emit(SHOP, "shop/update", shop)

    async def renamed() -> bool:
        view = (await shopify.client.get(f"/v1/shopify/connections/{connection['id']}/shop",
                                         headers=shopify.workspace.headers)).json()
        return bool(view["name"] == "Acme Two" and view["iana_timezone"] == "Europe/Lisbon")
    await shopify.until(renamed)
    products = (await shopify.client.get(f"/v1/shopify/connections/{connection['id']}/products",
                                         headers=shopify.workspace.headers)).json()["products"]
    assert [p["title"] for p in products] == ["Renamed Shirt"]


async def test_webhooks_out_of_order_keep_the_newest_version_and_mark(shopify: ShopifyEnv) -> None:
    """Shopify does not guarantee delivery order: an older version arriving late neither overwrites the stored
    one nor moves the published mark back (then a sync of that older version publishes nothing)."""
    await shopify.connect()
    order = shopify.sim.create_order(SHOP)
    newer = dict(order, total_price="20.00", updated_at="2030-01-02T00:00:00Z")
    older = dict(order, total_price="10.00", updated_at="2030-01-01T00:00:00Z")
    await shopify.sim.emit(SHOP, "orders/updated", newer)
    await shopify.until(lambda: shopify.events("platform.shopify.events.orders.updated"))
    row = await shopify.until(lambda: _order_row(shopify, str(order["id"])))
    assert row.data["total_price"] == "20.00"
    await shopify.sim.emit(SHOP, "orders/updated", older)

    async def both_published() -> bool:
        return len(await shopify.events("platform.shopify.events.orders.updated")) == 2
    await shopify.until(both_published)

    async def settled() -> ShopifyOrder | None:
        found = await _order_row(shopify, str(order["id"]))
        return found if found is not None and found.stored_at != row.stored_at else None
    again = await shopify.until(settled)
    assert again.data["total_price"] == "20.00"
    assert again.source_updated_at.replace(tzinfo=UTC) == datetime(2030, 1, 2, tzinfo=UTC)
    assert again.published_updated_at is not None
    assert again.published_updated_at.replace(tzinfo=UTC) == datetime(2030, 1, 2, tzinfo=UTC)
    assert again.id == row.id
