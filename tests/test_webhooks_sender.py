"""The sandbox's webhook sender against our real endpoint on loopback: its signatures are what the
official SDKs accept and what our verifiers accept, and it retries failures with bounded backoff."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator

import pytest
import stripe
from cryptography.hazmat.primitives import serialization
from sendgrid.helpers.eventwebhook import EventWebhook
from svix.webhooks import Webhook as SvixWebhook

from ionflux.core.platform import Platform
from ionflux.sandbox import Fault, SimulatorServer
from ionflux.sandbox.webhook_sender import (
    WebhookSender,
    meta_signer,
    sendgrid_signer,
    shopify_signer,
    sns_message,
    sns_signer,
    standard_signer,
    stripe_signer,
)

from .conftest import WorkspaceHandle
from .webhook_helpers import (
    CERT_URL,
    PHONE_ID,
    SHOP,
    SHOPIFY_SECRET,
    STRIPE_ACCOUNT,
    STRIPE_SECRET,
    SVIX_SECRET,
    TOPIC_ARN,
    WHATSAPP_SECRET,
    Hooks,
    open_hooks,
    whatsapp_body,
)


@pytest.fixture
async def hooks(platform: Platform, workspace: WorkspaceHandle) -> AsyncIterator[Hooks]:
    async with open_hooks(platform, workspace.id) as h:
        yield h


@pytest.fixture
async def served(hooks: Hooks) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(hooks.app, name="ionflux") as sim:
        yield sim


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_every_signer_is_accepted_by_our_endpoint(hooks: Hooks, served: SimulatorServer) -> None:
    base = served.base_url
    sender = WebhookSender(sleep=Sleeps())
    await hooks.connect("shopify", SHOP)
    await hooks.connect("whatsapp", PHONE_ID)
    await hooks.connect("stripe", STRIPE_ACCOUNT)
    await hooks.connect("sns", TOPIC_ARN)
    grid = await hooks.connect("sendgrid", "sg-account")
    svix = await hooks.connect("svix", "svix-app")
    order = json.dumps({"id": 1, "total_price": "5.00"}).encode()
    event = json.dumps({"id": "evt_s1", "type": "invoice.paid", "account": STRIPE_ACCOUNT}).encode()
    events = json.dumps([{"event": "open", "sg_event_id": "b3Blbg"}]).encode()
    standard = json.dumps({"type": "user.created", "data": {"id": 1}}).encode()
    sns = sns_message(hooks.sns.key, cert_url=CERT_URL, topic_arn=TOPIC_ARN, message="plain text", version="1")
    deliveries = [
        (f"{base}/webhooks/shopify", order, shopify_signer(SHOPIFY_SECRET, topic="orders/create", shop=SHOP)),
        (f"{base}/webhooks/whatsapp", whatsapp_body(), meta_signer(WHATSAPP_SECRET)),
        (f"{base}/webhooks/stripe", event, stripe_signer("whsec_old_rolled_secret", STRIPE_SECRET)),
        (f"{base}/webhooks/sendgrid/{grid}", events, sendgrid_signer(hooks.sendgrid_key)),
        (f"{base}/webhooks/svix/{svix}", standard, standard_signer(SVIX_SECRET)),
        (f"{base}/webhooks/sns", sns, sns_signer(sns)),
    ]
    for url, body, signer in deliveries:
        result = await sender.send(url, body, signer)
        assert result.delivered and result.attempts == 1, (url, result)
    await hooks.settle(len(deliveries))
    assert {e.type for e in hooks.delivered} == {
        "platform.shopify.events.orders.created", "platform.whatsapp.events.messages.changed",
        "platform.stripe.events.invoice.paid", "platform.sendgrid.events.email_events.received",
        "platform.svix.events.user.created", "platform.sns.events.notifications.received"}


def test_the_senders_signatures_pass_the_official_sdks(hooks: Hooks) -> None:
    body = json.dumps({"id": "evt_sdk", "object": "event", "type": "charge.succeeded"}).encode()
    header = stripe_signer(STRIPE_SECRET)(body, time.time())["Stripe-Signature"]
    assert stripe.Webhook.construct_event(body.decode(), header, STRIPE_SECRET)["id"] == "evt_sdk"
    headers = standard_signer(SVIX_SECRET, msg_id="msg_sdk")(body, time.time())
    SvixWebhook(SVIX_SECRET).verify(body, headers)
    public = hooks.sendgrid_key.public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    signed = sendgrid_signer(hooks.sendgrid_key)(body, 1764201600.0)
    assert EventWebhook(base64.b64encode(public).decode()).verify_signature(
        body.decode(), signed["X-Twilio-Email-Event-Webhook-Signature"],
        signed["X-Twilio-Email-Event-Webhook-Timestamp"])


async def test_failed_deliveries_are_retried_and_published_once(hooks: Hooks, served: SimulatorServer) -> None:
    await hooks.connect("stripe", STRIPE_ACCOUNT)
    served.faults.push(Fault.respond(503, times=2, path="/webhooks/stripe"))
    sleeps = Sleeps()
    event = json.dumps({"id": "evt_retry", "type": "invoice.paid", "account": STRIPE_ACCOUNT}).encode()
    result = await WebhookSender(sleep=sleeps).send(f"{served.base_url}/webhooks/stripe", event,
                                                    stripe_signer(STRIPE_SECRET))
    assert result.delivered and result.attempts == 3 and len(sleeps.calls) == 2
    await hooks.settle(1)
    assert len(hooks.delivered) == 1


async def test_retries_are_bounded_with_growing_backoff_and_honour_retry_after(
    hooks: Hooks, served: SimulatorServer
) -> None:
    served.faults.push(Fault.respond(503, times=None, path="/webhooks/shopify"))
    sleeps = Sleeps()
    sender = WebhookSender(sleep=sleeps, max_attempts=5, backoff_base=0.5, backoff_cap=3.0, jitter=False)
    signer = shopify_signer(SHOPIFY_SECRET, topic="orders/create", shop=SHOP)
    result = await sender.send(f"{served.base_url}/webhooks/shopify", b"{}", signer)
    assert not result.delivered and result.status == 503 and result.attempts == 5
    assert sleeps.calls == [0.5, 1.0, 2.0, 3.0]
    served.faults.clear()
    served.faults.push(Fault.respond(429, retry_after=2.5, times=1, path="/webhooks/shopify"))
    sleeps.calls.clear()
    await hooks.connect("shopify", SHOP)
    result = await sender.send(f"{served.base_url}/webhooks/shopify", b"{}", signer)
    assert result.delivered and sleeps.calls == [2.5]


async def test_a_rejected_signature_is_final_not_retried(hooks: Hooks, served: SimulatorServer) -> None:
    await hooks.connect("shopify", SHOP)
    sleeps = Sleeps()
    result = await WebhookSender(sleep=sleeps).send(
        f"{served.base_url}/webhooks/shopify", b"{}", shopify_signer("wrong", topic="orders/create", shop=SHOP))
    assert result.status == 401 and result.attempts == 1 and sleeps.calls == []
    assert await hooks.inbox() == []
