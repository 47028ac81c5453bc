"""`WebhookSender`: delivers webhooks signed exactly as each real provider signs them, and retries.

Written from the providers' schemes (API_FACTS.md), sharing no code with `ionflux.core.webhooks`: it is
the independent counterpart the verifiers are tested against, and what the demo and the simulators
use to call an IONFLUX endpoint. Schemes that put a timestamp in the signature (Stripe, Standard
Webhooks, SendGrid) are re-signed on every attempt, as those providers do; the others resend the same
bytes and headers. Retries are bounded, with exponential backoff and jitter, honouring Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

Signer = Callable[[bytes, float], dict[str, str]]  # (body, now) -> headers for this attempt


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def shopify_signer(secret: str, *, topic: str, shop: str, webhook_id: str | None = None,
                   event_id: str | None = None, api_version: str = "2026-07") -> Signer:
    webhook_id = webhook_id or str(uuid.uuid4())
    event_id = event_id or str(uuid.uuid4())
    triggered = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def sign(body: bytes, _now: float) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": shop,
                "X-Shopify-Hmac-Sha256": base64.b64encode(_hmac(secret.encode(), body)).decode(),
                "X-Shopify-Webhook-Id": webhook_id, "X-Shopify-Event-Id": event_id,
                "X-Shopify-API-Version": api_version, "X-Shopify-Triggered-At": triggered}
    return sign


def meta_signer(app_secret: str) -> Signer:
    def sign(body: bytes, _now: float) -> dict[str, str]:
        return {"Content-Type": "application/json",
                "X-Hub-Signature-256": "sha256=" + _hmac(app_secret.encode(), body).hex()}
    return sign


def stripe_signer(*secrets: str) -> Signer:
    """One v1 per secret: Stripe signs with both the old and the new secret while one is rolled."""
    def sign(body: bytes, now: float) -> dict[str, str]:
        stamp = str(int(now))
        v1 = ",".join("v1=" + _hmac(s.encode(), stamp.encode() + b"." + body).hex() for s in secrets)
        return {"Content-Type": "application/json", "Stripe-Signature": f"t={stamp},{v1}"}
    return sign


def standard_signer(secret: str, *, msg_id: str | None = None) -> Signer:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = msg_id or "msg_" + uuid.uuid4().hex

    def sign(body: bytes, now: float) -> dict[str, str]:
        stamp = str(int(now))
        signature = base64.b64encode(_hmac(key, f"{msg_id}.{stamp}.".encode() + body)).decode()
        return {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": stamp,
                "webhook-signature": f"v1,{signature}"}
    return sign


def sendgrid_signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    def sign(body: bytes, now: float) -> dict[str, str]:
        stamp = str(int(now))
        signature = private_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"Content-Type": "application/json",
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp}
    return sign


def sns_message(private_key: rsa.RSAPrivateKey, *, cert_url: str, topic_arn: str, message: str,
                kind: str = "Notification", subject: str | None = None, version: str = "2",
                message_id: str | None = None, subscribe_url: str | None = None, token: str | None = None,
                now: float | None = None) -> bytes:
    """An SNS HTTP(S) delivery body: SNS signs the fields ("Key\\nValue\\n" in its fixed order)."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    doc: dict[str, Any] = {"Type": kind, "MessageId": message_id or str(uuid.uuid4()), "TopicArn": topic_arn,
                           "Message": message, "Timestamp": moment.isoformat(timespec="milliseconds")
                           .replace("+00:00", "Z"), "SignatureVersion": version, "SigningCertURL": cert_url}
    order: tuple[str, ...]
    if kind == "Notification":
        if subject is not None:
            doc["Subject"] = subject
        order = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    else:
        doc["SubscribeURL"], doc["Token"] = subscribe_url or "", token or uuid.uuid4().hex
        order = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
    text = "".join(f"{k}\n{doc[k]}\n" for k in order if k in doc).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1 is SHA1withRSA
    doc["Signature"] = base64.b64encode(private_key.sign(text, padding.PKCS1v15(), digest)).decode()
    return json.dumps(doc).encode()


def sns_signer(body: bytes) -> Signer:
    doc = json.loads(body)

    def sign(_body: bytes, _now: float) -> dict[str, str]:
        return {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": doc["Type"],
                "x-amz-sns-message-id": doc["MessageId"], "x-amz-sns-topic-arn": doc["TopicArn"]}
    return sign


@dataclass
class DeliveryResult:
    status: int | None  # the last answer's status; None if no answer came at all
    attempts: int
    delays: list[float] = field(default_factory=list)
    error: str | None = None
    body: bytes = b""

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient | None = None, *, max_attempts: int = 5,
                 backoff_base: float = 0.5, backoff_cap: float = 30.0, timeout: float = 5.0,
                 retry_client_errors: bool = False, jitter: bool = True,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time) -> None:
        """Real providers retry every non-2xx; by default 4xx other than 408/429 are final here."""
        self._client = client
        self.max_attempts = max(1, max_attempts)
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.timeout = timeout
        self.retry_client_errors = retry_client_errors
        self.jitter = jitter
        self.sleep, self.clock = sleep, clock

    async def send(self, url: str, body: bytes, sign: Signer,
                   extra_headers: Mapping[str, str] | None = None) -> DeliveryResult:
        result = DeliveryResult(status=None, attempts=0)
        async with self._session() as client:
            for attempt in range(1, self.max_attempts + 1):
                result.attempts = attempt
                headers = {**sign(body, self.clock()), **(extra_headers or {})}
                retry_after: float | None = None
                try:
                    response = await client.post(url, content=body, headers=headers, timeout=self.timeout)
                    result.status, result.body, result.error = response.status_code, response.content, None
                    if result.delivered or not self._retryable(response.status_code):
                        return result
                    retry_after = _seconds(response.headers.get("retry-after"))
                except httpx.HTTPError as exc:
                    result.status, result.error = None, f"{type(exc).__name__}: {exc}"
                if attempt < self.max_attempts:
                    delay = self._delay(attempt, retry_after)
                    result.delays.append(delay)
                    await self.sleep(delay)
        return result

    def _retryable(self, status: int) -> bool:
        return status >= 500 or status in (408, 429) or (self.retry_client_errors and status >= 400)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        if self.jitter:
            delay = delay / 2 + random.uniform(0, delay / 2)  # noqa: S311 - jitter, not cryptography
        if retry_after is not None:
            delay = min(self.backoff_cap, max(delay, retry_after))
        return delay

    def _session(self) -> _ClientSession:
        return _ClientSession(self._client)


class _ClientSession:
    """Use the caller's client, or a fresh one for the call."""

    def __init__(self, client: httpx.AsyncClient | None) -> None:
        self._given = client
        self._own: httpx.AsyncClient | None = None

    async def __aenter__(self) -> httpx.AsyncClient:
        if self._given is not None:
            return self._given
        self._own = httpx.AsyncClient()
        return self._own

    async def __aexit__(self, *_exc: object) -> None:
        if self._own is not None:
            await self._own.aclose()


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
