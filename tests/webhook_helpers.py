"""Shared set-up for the webhook tests: an app whose pipeline has an injected SNS fetcher, connections,
a consumer that records what the bus delivered, and signers written from API_FACTS (not from our code)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.app import create_app
from ionflux.core.bus import Event
from ionflux.core.models import PLATFORM_WORKSPACE, Connection, OutboxEvent
from ionflux.core.platform import Platform
from ionflux.core.webhooks import WebhookDelivery, WebhookIngestion, default_registry

from .polling import until

SHOPIFY_SECRET = "shpss_current_0123456789abcdef"
SHOPIFY_PREVIOUS = "shpss_previous_0123456789abcdef"
WHATSAPP_SECRET = "meta-app-secret-0123456789"
WHATSAPP_VERIFY = "verify-token-0123456789"
STRIPE_SECRET = "whsec_stripe_test_0123456789abcdef"
SVIX_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode()
SHOP = "acme.myshopify.com"
PHONE_ID = "106540352242922"
STRIPE_ACCOUNT = "acct_1TestAccount0001"
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:ses-notifications"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"


@dataclass
class SnsKeys:
    key: rsa.RSAPrivateKey
    cert_pem: bytes

    @classmethod
    def generate(cls, common_name: str = "sns.amazonaws.com") -> SnsKeys:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
        return cls(key, cert.public_bytes(serialization.Encoding.PEM))


@dataclass
class Hooks:
    platform: Platform
    client: httpx.AsyncClient
    workspace_id: str
    pipeline: WebhookIngestion
    sns: SnsKeys
    fetched: list[str] = field(default_factory=list)
    delivered: list[Event] = field(default_factory=list)
    sendgrid_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    app: Any = None

    async def connect(self, provider: str, external_id: str, workspace_id: str | None = None,
                      credential_name: str = "default") -> str:
        async with self.platform.db.tenant(workspace_id or self.workspace_id) as session:
            conn = Connection(provider=provider, external_id=external_id, credential_name=credential_name)
            session.add(conn)
            await session.flush()
            return conn.id

    async def outbox(self, event_type: str | None = None) -> list[OutboxEvent]:
        """The events the webhook pipeline wrote (services reacting to them may write others)."""
        async with self.platform.db.system() as session:
            query = select(OutboxEvent).where(OutboxEvent.source.like("/webhooks/%")).order_by(OutboxEvent.seq)
            if event_type:
                query = query.where(OutboxEvent.type == event_type)
            return list((await session.scalars(query)).all())

    async def inbox(self) -> list[WebhookDelivery]:
        async with self.platform.db.system() as session:
            return list((await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.received_at))).all())

    async def settle(self, expected_events: int) -> None:
        """Wait until exactly `expected_events` outbox rows exist and all are published."""
        async def done() -> bool:
            rows = await self.outbox()
            return len(rows) == expected_events and all(r.status == "published" for r in rows)
        await until(done)

    def delivered_of(self, event_type: str) -> list[Event]:
        return [e for e in self.delivered if e.type == event_type]


@asynccontextmanager
async def open_hooks(platform: Platform, workspace_id: str) -> AsyncIterator[Hooks]:
    sns = SnsKeys.generate()
    fetched: list[str] = []

    async def fetcher(url: str) -> bytes:
        fetched.append(url)
        return sns.cert_pem if url.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"

    pipeline = WebhookIngestion(platform, default_registry(sns_fetcher=fetcher))
    app = create_app(platform, manage_lifecycle=False)
    app.state.webhooks = pipeline
    hooks_holder: list[Hooks] = []

    async def record(event: Event, _session: AsyncSession) -> None:
        if event.source.startswith("/webhooks/"):
            hooks_holder[0].delivered.append(event)

    platform.bus.subscribe("webhook-test-recorder", ["platform.#"], record)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ionflux.test") as client:
        hooks = Hooks(platform, client, workspace_id, pipeline, sns, fetched, app=app)
        hooks_holder.append(hooks)
        sendgrid_public = hooks.sendgrid_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        await platform.vault.put(PLATFORM_WORKSPACE, "shopify",
                                 {"client_secret": SHOPIFY_SECRET, "client_secret_previous": SHOPIFY_PREVIOUS})
        await platform.vault.put(PLATFORM_WORKSPACE, "whatsapp",
                                 {"app_secret": WHATSAPP_SECRET, "verify_token": WHATSAPP_VERIFY})
        await platform.vault.put(PLATFORM_WORKSPACE, "stripe", {"webhook_secret": STRIPE_SECRET})
        await platform.vault.put(PLATFORM_WORKSPACE, "sendgrid",
                                 {"webhook_public_key": base64.b64encode(sendgrid_public).decode()})
        await platform.vault.put(workspace_id, "svix", {"webhook_secret": SVIX_SECRET})
        yield hooks
        await pipeline.drain()
        await pipeline.inbox.close()


# -- signing by hand, from API_FACTS.md (independent of src/) -------------------------------------

def shopify_headers(body: bytes, *, secret: str = SHOPIFY_SECRET, topic: str = "orders/create",
                    webhook_id: str = "wh-1", event_id: str = "ev-1", shop: str = SHOP,
                    triggered_at: datetime | None = None) -> dict[str, str]:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {
        "X-Shopify-Hmac-Sha256": digest, "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id, "X-Shopify-Event-Id": event_id, "X-Shopify-API-Version": "2026-07",
        "X-Shopify-Triggered-At": (triggered_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "Content-Type": "application/json",
    }


def meta_headers(body: bytes, secret: str = WHATSAPP_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def whatsapp_body(*, phone_id: str = PHONE_ID, message_time: float | None = None, wamid: str = "wamid.1") -> bytes:
    stamp = str(int(message_time if message_time is not None else time.time()))
    doc: dict[str, Any] = {"object": "whatsapp_business_account", "entry": [{"id": "WABA-1", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_id},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511999999999"}],
            "messages": [{"from": "5511999999999", "id": wamid, "timestamp": stamp, "type": "text",
                          "text": {"body": "olá, tudo bem?"}}],
        }}]}]}
    return json.dumps(doc, ensure_ascii=False).encode()


def sns_message(keys: SnsKeys, *, kind: str = "Notification", message: str = "hello", version: str = "2",
                message_id: str = "msg-1", timestamp: datetime | None = None, topic_arn: str = TOPIC_ARN,
                cert_url: str = CERT_URL, subject: str | None = "note") -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Type": kind, "MessageId": message_id, "TopicArn": topic_arn, "Message": message,
        "Timestamp": (timestamp or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SignatureVersion": version, "SigningCertURL": cert_url,
    }
    if kind == "Notification":
        if subject is not None:
            doc["Subject"] = subject
        order = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        doc["Token"] = "token-123"
        doc["SubscribeURL"] = ("https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
                               f"&TopicArn={topic_arn}&Token=token-123")
        order = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{k}\n{doc[k]}\n" for k in order if k in doc)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    doc["Signature"] = base64.b64encode(keys.key.sign(text.encode(), padding.PKCS1v15(), algorithm)).decode()
    return doc


def sns_headers(doc: dict[str, Any]) -> dict[str, str]:
    return {"x-amz-sns-message-type": doc["Type"], "x-amz-sns-message-id": doc["MessageId"],
            "x-amz-sns-topic-arn": doc["TopicArn"], "Content-Type": "text/plain; charset=UTF-8"}


def sendgrid_sign(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = key.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp), "Content-Type": "application/json"}
