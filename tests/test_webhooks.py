"""Webhook ingestion, provider by provider: what a provider (or a forger) sees from POST /webhooks/….

Vectors come from the official SDKs where one signs (stripe, svix; sendgrid's verifier checks ours)
or are computed by hand from API_FACTS.md; none of them uses src/ionflux's own signing code.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from svix.webhooks import Webhook as SvixWebhook

from ionflux.core.platform import Platform

from .conftest import WorkspaceHandle
from .webhook_helpers import (
    PHONE_ID,
    SHOP,
    STRIPE_ACCOUNT,
    STRIPE_SECRET,
    SVIX_SECRET,
    TOPIC_ARN,
    Hooks,
    SnsKeys,
    meta_headers,
    open_hooks,
    sendgrid_sign,
    shopify_headers,
    sns_headers,
    sns_message,
    whatsapp_body,
)


@pytest.fixture
async def hooks(platform: Platform, workspace: WorkspaceHandle) -> AsyncIterator[Hooks]:
    async with open_hooks(platform, workspace.id) as h:
        yield h


Request = tuple[str, bytes, dict[str, str]]


@dataclass(frozen=True)
class Case:
    """How to build a delivery for one provider: `age` seconds old, signed with the right key or not."""

    name: str
    event_type: str
    connect: Callable[[Hooks], Awaitable[str]]
    build: Callable[[Hooks, str, float, bool], Request]  # hooks, connection id, age, good key
    stale_age: float
    resigned: bool = False  # the provider signs each retry anew (its timestamp is in the signature)


ORDER = json.dumps({"id": 820982911946154508, "email": "jon@example.com", "total_price": "199.00",
                    "line_items": [{"title": "IPod Nano - 8GB", "price": "199.00"}], "note": "x" * 1500}).encode()


def _shopify(h: Hooks, _cid: str, age: float, good: bool) -> Request:
    headers = shopify_headers(ORDER, secret="shpss_forged" if not good else "shpss_current_0123456789abcdef",
                              triggered_at=datetime.now(UTC) - timedelta(seconds=age))
    return "/webhooks/shopify", ORDER, headers


def _whatsapp(h: Hooks, _cid: str, age: float, good: bool) -> Request:
    body = whatsapp_body(message_time=time.time() - age)
    return "/webhooks/whatsapp", body, meta_headers(body, "meta-app-secret-0123456789" if good else "forged")


STRIPE_EVENT = json.dumps({"id": "evt_1PzTest", "object": "event", "type": "payment_intent.succeeded",
                           "account": STRIPE_ACCOUNT, "api_version": "2026-07-30",
                           "data": {"object": {"id": "pi_123", "object": "payment_intent", "amount": 2000}}},
                          indent=2).encode()


def _stripe(h: Hooks, _cid: str, age: float, good: bool) -> Request:
    header = stripe.WebhookSignature.generate_signature_header(
        STRIPE_EVENT.decode(), STRIPE_SECRET if good else "whsec_forged", timestamp=int(time.time() - age))
    return "/webhooks/stripe", STRIPE_EVENT, {"Stripe-Signature": header, "Content-Type": "application/json"}


SENDGRID_EVENTS = json.dumps([
    {"email": "ana@example.com", "event": "delivered", "sg_event_id": "ZGVsaXZlcmVk", "timestamp": 1764201600},
    {"email": "bo@example.com", "event": "bounce", "sg_event_id": "Ym91bmNl", "timestamp": 1764201601},
]).encode() + b"\r\n"


def _sendgrid(h: Hooks, cid: str, age: float, good: bool) -> Request:
    key = h.sendgrid_key if good else ec.generate_private_key(ec.SECP256R1())
    return f"/webhooks/sendgrid/{cid}", SENDGRID_EVENTS, sendgrid_sign(key, SENDGRID_EVENTS, int(time.time() - age))


SVIX_BODY = json.dumps({"type": "invoice.paid", "timestamp": "2026-11-27T00:00:00Z",
                        "data": {"id": "inv_1", "amount": 10}}).encode()


def _svix(h: Hooks, cid: str, age: float, good: bool) -> Request:
    secret = SVIX_SECRET if good else "whsec_" + "Zm9yZ2VkLWtleS1mb3JnZWQta2V5LWZvcmdlZC1rZXk="
    stamp = datetime.now(UTC) - timedelta(seconds=age)
    signature = SvixWebhook(secret).sign("msg_2Test", stamp, SVIX_BODY.decode())
    return f"/webhooks/svix/{cid}", SVIX_BODY, {
        "webhook-id": "msg_2Test", "webhook-timestamp": str(int(stamp.timestamp())), "webhook-signature": signature,
        "Content-Type": "application/json"}


def _sns(version: str) -> Callable[[Hooks, str, float, bool], Request]:
    def build(h: Hooks, _cid: str, age: float, good: bool) -> Request:
        keys = h.sns if good else SnsKeys.generate()
        doc = sns_message(keys, version=version, message=json.dumps({"notificationType": "Bounce",
                                                                     "bounce": {"bounceType": "Permanent"}}),
                          timestamp=datetime.now(UTC) - timedelta(seconds=age))
        return "/webhooks/sns", json.dumps(doc).encode(), sns_headers(doc)
    return build


CASES = [
    Case("shopify", "platform.shopify.events.orders.created", lambda h: h.connect("shopify", SHOP), _shopify,
         13 * 3600),
    Case("whatsapp", "platform.whatsapp.events.messages.changed", lambda h: h.connect("whatsapp", PHONE_ID),
         _whatsapp, 9 * 86400),
    Case("stripe", "platform.stripe.events.payment_intent.succeeded",
         lambda h: h.connect("stripe", STRIPE_ACCOUNT), _stripe, 301, True),
    Case("sendgrid", "platform.sendgrid.events.email_events.received",
         lambda h: h.connect("sendgrid", "sendgrid-account"), _sendgrid, 26 * 3600, True),
    Case("svix", "platform.svix.events.invoice.paid", lambda h: h.connect("svix", "svix-app"), _svix, 301, True),
    Case("sns-v1", "platform.ses.events.email.bounce", lambda h: h.connect("sns", TOPIC_ARN), _sns("1"), 25 * 3600),
    Case("sns-v2", "platform.ses.events.email.bounce", lambda h: h.connect("sns", TOPIC_ARN), _sns("2"), 25 * 3600),
]
IDS = [c.name for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_a_valid_delivery_is_acknowledged_stored_and_published(hooks: Hooks, case: Case) -> None:
    cid = await case.connect(hooks)
    path, body, headers = case.build(hooks, cid, 0, True)
    response = await hooks.client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    await hooks.settle(1)
    [event] = hooks.delivered_of(case.event_type)
    assert event.workspace_id == hooks.workspace_id
    assert event.data["webhook_delivery_id"] == response.json()["deliveries"][0]["id"]
    [row] = await hooks.inbox()
    assert row.body == body and row.event_id == event.id and row.workspace_id == hooks.workspace_id
    stored = {k.lower() for k in row.headers}
    assert not stored & {"x-shopify-hmac-sha256", "x-hub-signature-256", "stripe-signature", "webhook-signature",
                         "x-twilio-email-event-webhook-signature"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_forged_truncated_reencoded_and_replayed_deliveries_get_401_and_store_nothing(
    hooks: Hooks, case: Case
) -> None:
    cid = await case.connect(hooks)
    path, body, headers = case.build(hooks, cid, 0, False)
    assert (await hooks.client.post(path, content=body, headers=headers)).status_code == 401, "forged"

    path, body, headers = case.build(hooks, cid, case.stale_age, True)
    assert (await hooks.client.post(path, content=body, headers=headers)).status_code == 401, "replayed"

    path, body, headers = case.build(hooks, cid, 0, True)
    if case.name.startswith("sns"):
        # SNS signs field values, not bytes: cutting the signed Message is the truncation that matters.
        doc = json.loads(body)
        doc["Message"] = doc["Message"][:-5]
        truncated = json.dumps(doc).encode()
    else:
        truncated = body[:-5]
    assert (await hooks.client.post(path, content=truncated, headers=headers)).status_code == 401, "truncated"

    reencoded = json.dumps(json.loads(body), indent=1, ensure_ascii=True).encode()
    assert reencoded != body
    status = (await hooks.client.post(path, content=reencoded, headers=headers)).status_code
    # SNS is the exception by design: re-serialised JSON keeps every signed value, so it verifies.
    assert status == (200 if case.name.startswith("sns") else 401), "re-encoded"

    if not case.name.startswith("sns"):
        assert await hooks.inbox() == []
        assert await hooks.outbox() == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_the_same_delivery_three_times_is_published_once(hooks: Hooks, case: Case) -> None:
    cid = await case.connect(hooks)
    answers = []
    path, body, headers = case.build(hooks, cid, 0, True)
    for attempt in range(3):
        if case.resigned:
            path, body, headers = case.build(hooks, cid, attempt, True)
        response = await hooks.client.post(path, content=body, headers=headers)
        assert response.status_code == 200, response.text
        answers.append(response.json()["status"])
    assert answers == ["accepted", "duplicate", "duplicate"]
    await hooks.settle(1)
    assert len(hooks.delivered_of(case.event_type)) == 1
    rows = await hooks.inbox()
    assert sorted(r.status for r in rows) == ["duplicate", "duplicate", "received"]
    original = next(r for r in rows if r.status == "received")
    assert all(r.duplicate_of == original.id for r in rows if r.status == "duplicate")


def test_the_sdk_vectors_are_what_the_providers_themselves_accept() -> None:
    """Our test vectors pass the official verifiers, so the 200s above are not self-agreement."""
    header = stripe.WebhookSignature.generate_signature_header(STRIPE_EVENT.decode(), STRIPE_SECRET)
    assert stripe.Webhook.construct_event(STRIPE_EVENT.decode(), header, STRIPE_SECRET)["id"] == "evt_1PzTest"
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64

    signed = sendgrid_sign(key, SENDGRID_EVENTS, 1764201600)
    verifier = EventWebhook(base64.b64encode(public).decode())
    assert verifier.verify_signature(SENDGRID_EVENTS.decode(), signed["X-Twilio-Email-Event-Webhook-Signature"],
                                     signed["X-Twilio-Email-Event-Webhook-Timestamp"])
    stamp = datetime.now(UTC)
    sig = SvixWebhook(SVIX_SECRET).sign("msg_x", stamp, SVIX_BODY.decode())
    SvixWebhook(SVIX_SECRET).verify(SVIX_BODY, {"webhook-id": "msg_x", "webhook-timestamp": str(int(stamp.timestamp())),
                                                "webhook-signature": sig})
