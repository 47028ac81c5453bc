"""Webhook ingestion at its edges: rotation, hostile headers, routing, handshakes, SNS certificates."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import stripe
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ionflux.core.platform import Platform

from .conftest import WorkspaceHandle
from .webhook_helpers import (
    PHONE_ID,
    SHOP,
    SHOPIFY_PREVIOUS,
    TOPIC_ARN,
    WHATSAPP_VERIFY,
    Hooks,
    SnsKeys,
    meta_headers,
    open_hooks,
    shopify_headers,
    sns_headers,
    sns_message,
    until,
    whatsapp_body,
)

ORDER = json.dumps({"id": 1, "total_price": "10.00"}).encode()


@pytest.fixture
async def hooks(platform: Platform, workspace: WorkspaceHandle) -> AsyncIterator[Hooks]:
    async with open_hooks(platform, workspace.id) as h:
        yield h


async def test_shopify_accepts_the_previous_secret_during_a_rotation_and_nothing_else(hooks: Hooks) -> None:
    await hooks.connect("shopify", SHOP)
    old = shopify_headers(ORDER, secret=SHOPIFY_PREVIOUS)
    assert (await hooks.client.post("/webhooks/shopify", content=ORDER, headers=old)).status_code == 200
    other = shopify_headers(ORDER, secret="shpss_someone_else", event_id="ev-2")
    assert (await hooks.client.post("/webhooks/shopify", content=ORDER, headers=other)).status_code == 401


@pytest.mark.parametrize("header_name", ["X-Shopify-Hmac-Sha256", "X-Hub-Signature-256"])
async def test_a_non_ascii_signature_header_is_a_401_not_a_500(hooks: Hooks, header_name: str) -> None:
    await hooks.connect("shopify", SHOP)
    await hooks.connect("whatsapp", PHONE_ID)
    path = "/webhooks/shopify" if "Shopify" in header_name else "/webhooks/whatsapp"
    body = ORDER if "Shopify" in header_name else whatsapp_body()
    headers: dict[str, str | bytes] = dict(shopify_headers(body)) if "Shopify" in header_name else {}
    for forged in ("sha256=ü".encode(), "ÿÿÿ=".encode("latin-1"), b"sha256=" + "é".encode() * 32):
        headers[header_name] = forged
        response = await hooks.client.post(path, content=body, headers=headers)
        assert response.status_code == 401, response.text
    for scheme in ("stripe", "svix", "sendgrid"):
        cid = await hooks.connect(scheme, f"{scheme}-acct")
        hostile = {"Stripe-Signature": "t=1,v1=ü".encode(), "webhook-id": "é".encode(), "webhook-timestamp": b"1",
                   "webhook-signature": "v1,ü".encode(), "X-Twilio-Email-Event-Webhook-Signature": "ü".encode(),
                   "X-Twilio-Email-Event-Webhook-Timestamp": "ü".encode()}
        response = await hooks.client.post(f"/webhooks/{scheme}/{cid}", content=b"[]", headers=hostile)
        assert response.status_code == 401, (scheme, response.text)
    assert await hooks.inbox() == []


async def test_unknown_providers_and_accounts_are_404_and_bad_shapes_400(hooks: Hooks) -> None:
    await hooks.connect("shopify", SHOP)
    post = hooks.client.post
    assert (await post("/webhooks/nope", content=ORDER)).status_code == 404
    unknown_shop = shopify_headers(ORDER, shop="stranger.myshopify.com")
    assert (await post("/webhooks/shopify", content=ORDER, headers=unknown_shop)).status_code == 404
    assert (await post("/webhooks/shopify/no-such-connection", content=ORDER,
                       headers=shopify_headers(ORDER))).status_code == 404
    unsigned = {k: v for k, v in shopify_headers(ORDER).items() if k != "X-Shopify-Hmac-Sha256"}
    assert (await post("/webhooks/shopify", content=ORDER, headers=unsigned)).status_code == 401
    not_json = b"<order/>"
    assert (await post("/webhooks/shopify", content=not_json, headers=shopify_headers(not_json))).status_code == 400
    no_topic = {k: v for k, v in shopify_headers(ORDER).items() if k != "X-Shopify-Topic"}
    assert (await post("/webhooks/shopify", content=ORDER, headers=no_topic)).status_code == 400
    evil_shop = shopify_headers(ORDER, shop="acme.myshopify.com.evil.io")
    assert (await post("/webhooks/shopify", content=ORDER, headers=evil_shop)).status_code == 400
    svix_without_connection = await post("/webhooks/svix", content=b"{}", headers={"webhook-id": "m"})
    assert svix_without_connection.status_code == 404
    assert "/webhooks/svix/{connection_id}" in svix_without_connection.json()["error"]["message"]
    assert await hooks.inbox() == [] and await hooks.outbox() == []


async def test_an_oversized_body_is_413_before_anything_else(hooks: Hooks) -> None:
    hooks.pipeline.max_body_bytes = 1000
    big = json.dumps({"note": "x" * 2000}).encode()
    response = await hooks.client.post("/webhooks/shopify", content=big, headers=shopify_headers(big))
    assert response.status_code == 413
    assert "IONFLUX_WEBHOOK_MAX_BODY_BYTES" in response.json()["error"]["message"]


async def test_compliance_topics_and_topic_mapping(hooks: Hooks) -> None:
    await hooks.connect("shopify", SHOP)
    cases = {"customers/redact": "platform.shopify.events.customers.redact",
             "app/uninstalled": "platform.shopify.events.app.uninstalled",
             "products/update": "platform.shopify.events.products.updated",
             "orders/paid": "platform.shopify.events.orders.paid"}
    for n, raw in enumerate(cases):
        headers = shopify_headers(ORDER, topic=raw, event_id=f"ev-{n}", webhook_id=f"wh-{n}")
        assert (await hooks.client.post("/webhooks/shopify", content=ORDER, headers=headers)).status_code == 200
    await hooks.settle(len(cases))
    assert sorted(e.type for e in hooks.delivered) == sorted(cases.values())
    assert {e.data["topic"] for e in hooks.delivered} == set(cases)


async def test_whatsapp_verification_handshake(hooks: Hooks) -> None:
    good = {"hub.mode": "subscribe", "hub.verify_token": WHATSAPP_VERIFY, "hub.challenge": "1158201444"}
    response = await hooks.client.get("/webhooks/whatsapp", params=good)
    assert response.status_code == 200 and response.text == "1158201444"
    bad = {**good, "hub.verify_token": "guess"}
    assert (await hooks.client.get("/webhooks/whatsapp", params=bad)).status_code == 403
    assert (await hooks.client.get("/webhooks/shopify")).status_code == 405


async def test_a_whatsapp_delivery_for_two_workspaces_is_split_and_each_sees_only_its_own(
    hooks: Hooks, other_workspace: WorkspaceHandle
) -> None:
    await hooks.connect("whatsapp", PHONE_ID)
    await hooks.connect("whatsapp", "999000111", workspace_id=other_workspace.id)
    doc = json.loads(whatsapp_body())
    second = json.loads(whatsapp_body(phone_id="999000111", wamid="wamid.2"))["entry"][0]
    second["id"] = "WABA-2"
    doc["entry"].append(second)
    doc["entry"].append({"id": "WABA-3", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "unregistered"}, "messages": []}}]})
    body = json.dumps(doc).encode()
    response = await hooks.client.post("/webhooks/whatsapp", content=body, headers=meta_headers(body))
    assert response.status_code == 200 and len(response.json()["deliveries"]) == 2
    await hooks.settle(2)
    by_ws = {e.workspace_id: e for e in hooks.delivered}
    assert set(by_ws) == {hooks.workspace_id, other_workspace.id}
    assert "wamid.2" not in json.dumps(by_ws[hooks.workspace_id].data)
    assert "wamid.1" not in json.dumps(by_ws[other_workspace.id].data)
    rows = {r.workspace_id: r for r in await hooks.inbox()}
    assert b"wamid.1" not in rows[other_workspace.id].body


@pytest.mark.parametrize("url", [
    "http://sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com.evil.io/cert.pem",
    "https://evil.io/sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    "https://user@sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.amazonaws.com/cert.pem",
    "https://sqs.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com/cert.txt",
    "https://sns.us-east-1.amazonaws.com\n.evil.io/cert.pem",
])
async def test_sns_signing_certificates_come_only_from_the_sns_host(hooks: Hooks, url: str) -> None:
    await hooks.connect("sns", TOPIC_ARN)
    doc = sns_message(hooks.sns, cert_url=url)
    response = await hooks.client.post("/webhooks/sns", content=json.dumps(doc).encode(), headers=sns_headers(doc))
    assert response.status_code == 401
    assert hooks.fetched == []


async def test_sns_certificates_are_cached_and_must_be_issued_to_sns(hooks: Hooks) -> None:
    await hooks.connect("sns", TOPIC_ARN)
    for n in range(3):
        doc = sns_message(hooks.sns, message_id=f"m-{n}")
        response = await hooks.client.post("/webhooks/sns", content=json.dumps(doc).encode(), headers=sns_headers(doc))
        assert response.status_code == 200
    assert len(hooks.fetched) == 1
    impostor = SnsKeys.generate(common_name="sns.amazonaws.com.evil.io")
    hooks.sns.cert_pem = impostor.cert_pem
    doc = sns_message(impostor, message_id="m-x",
                      cert_url="https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-2.pem")
    response = await hooks.client.post("/webhooks/sns", content=json.dumps(doc).encode(), headers=sns_headers(doc))
    assert response.status_code == 401


async def test_sns_subscription_confirmation_is_recorded_and_confirmed_on_the_topics_region(hooks: Hooks) -> None:
    await hooks.connect("sns", TOPIC_ARN)
    doc = sns_message(hooks.sns, kind="SubscriptionConfirmation", message="You have chosen to subscribe")
    response = await hooks.client.post("/webhooks/sns", content=json.dumps(doc).encode(), headers=sns_headers(doc))
    assert response.status_code == 200
    await hooks.pipeline.drain()
    assert hooks.fetched[-1] == doc["SubscribeURL"]
    await hooks.settle(1)
    assert hooks.delivered[0].type == "platform.sns.events.subscriptions.confirmation_requested"
    [row] = await hooks.inbox()
    assert row.topic == "SubscriptionConfirmation" and row.error is None


async def test_sns_never_fetches_a_subscribe_url_off_the_topics_region(hooks: Hooks) -> None:
    await hooks.connect("sns", TOPIC_ARN)
    doc = sns_message(hooks.sns, kind="SubscriptionConfirmation")
    doc["SubscribeURL"] = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=t"
    signed = _resign(hooks, doc)  # validly signed by "SNS", yet pointing at another region's endpoint
    response = await hooks.client.post("/webhooks/sns", content=json.dumps(signed).encode(),
                                       headers=sns_headers(signed))
    assert response.status_code == 200
    await hooks.pipeline.drain()
    assert not any("ConfirmSubscription" in url for url in hooks.fetched)
    [row] = await hooks.inbox()
    assert row.error is not None and "region" in row.error


def _resign(hooks: Hooks, doc: dict[str, Any]) -> dict[str, Any]:
    order = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{doc[k]}\n" for k in order)
    signature = hooks.sns.key.sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {**doc, "Signature": base64.b64encode(signature).decode()}


async def test_stripe_events_route_by_account_or_by_connection_url(hooks: Hooks) -> None:
    cid = await hooks.connect("stripe", "acct_platform_self")
    body = json.dumps({"id": "evt_own", "type": "charge.refunded", "data": {"object": {"id": "ch_1"}}}).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), "whsec_stripe_test_0123456789abcdef",
                                                               timestamp=int(time.time()))
    headers = {"Stripe-Signature": header}
    assert (await hooks.client.post("/webhooks/stripe", content=body, headers=headers)).status_code == 404
    assert (await hooks.client.post(f"/webhooks/stripe/{cid}", content=body, headers=headers)).status_code == 200
    await hooks.settle(1)
    assert hooks.delivered[0].type == "platform.stripe.events.charge.refunded"
    assert hooks.delivered[0].subject == "ch_1"


async def test_concurrent_copies_of_one_delivery_are_published_once(hooks: Hooks) -> None:
    """Providers retry while the first attempt is still in flight: the copies land in one batch or in
    racing batches, and either way exactly one event comes out."""
    await hooks.connect("shopify", SHOP)
    headers = shopify_headers(ORDER, event_id="ev-race", webhook_id="wh-race")
    answers = await asyncio.gather(*[hooks.client.post("/webhooks/shopify", content=ORDER, headers=headers)
                                     for _ in range(12)])
    assert [a.status_code for a in answers] == [200] * 12
    assert sorted(a.json()["status"] for a in answers) == ["accepted"] + ["duplicate"] * 11
    await hooks.settle(1)
    assert len(hooks.delivered) == 1
    rows = await hooks.inbox()
    original = next(r for r in rows if r.status == "received")
    assert len(rows) == 12 and all(r.duplicate_of == original.id for r in rows if r is not original)


async def test_a_bad_record_does_not_fail_the_deliveries_batched_with_it(hooks: Hooks) -> None:
    await hooks.connect("shopify", SHOP)
    poison = b'{"total": NaN}'  # parses, but an event's data must be strict JSON
    good = [json.dumps({"id": n}).encode() for n in range(5)]
    requests = [hooks.client.post("/webhooks/shopify", content=poison,
                                  headers=shopify_headers(poison, event_id="ev-poison"))]
    requests += [hooks.client.post("/webhooks/shopify", content=body,
                                   headers=shopify_headers(body, event_id=f"ev-{n}")) for n, body in enumerate(good)]
    answers = await asyncio.gather(*requests)
    assert answers[0].status_code == 400
    assert [a.status_code for a in answers[1:]] == [200] * 5
    await hooks.settle(5)


async def test_deliveries_past_retention_are_pruned_and_their_keys_forgotten(hooks: Hooks) -> None:
    await hooks.connect("shopify", SHOP)
    headers = shopify_headers(ORDER, event_id="ev-old")
    assert (await hooks.client.post("/webhooks/shopify", content=ORDER, headers=headers)).json()["status"] == "accepted"
    hooks.pipeline.inbox.retention = timedelta(seconds=-1)  # everything is "old" now
    assert await hooks.pipeline.inbox.prune() == 1
    assert await hooks.inbox() == []
    hooks.pipeline.inbox.retention = timedelta(days=8)
    again = await hooks.client.post("/webhooks/shopify", content=ORDER, headers=headers)
    assert again.json()["status"] == "accepted"


async def test_a_delivery_waits_out_another_sqlite_writer_and_is_stored(hooks: Hooks) -> None:
    if not hooks.platform.db.is_sqlite:
        pytest.skip("SQLite's single-writer lock")
    await hooks.connect("shopify", SHOP)
    other = sqlite3.connect(hooks.platform.db.url.split(":///", 1)[1], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # e.g. the outbox relay marking a batch published
    try:
        sending = asyncio.ensure_future(
            hooks.client.post("/webhooks/shopify", content=ORDER, headers=shopify_headers(ORDER)))
        inbox = hooks.pipeline.inbox

        async def writing() -> bool:
            return inbox._active > 0 and not inbox._queue

        await until(writing)
        assert not sending.done()
    finally:
        other.execute("ROLLBACK")
        other.close()
    response = await sending
    assert response.status_code == 200
    await hooks.settle(1)
