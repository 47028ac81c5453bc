"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…][,v0=…]`, hex HMAC-SHA256 of `"{t}." + body` with
the endpoint secret `whsec_…` (API_FACTS §6). Any v1 may match; v0 and unknown schemes are ignored;
events older than 300 s are refused (stripe-python's DEFAULT_TOLERANCE, which checks only the past).

Topic: the event `type` with its last word as the action: `payment_intent.succeeded` ->
`platform.stripe.events.payment_intent.succeeded`, `customer.subscription.updated` ->
`platform.stripe.events.customer_subscription.updated`. Connect events name their account
(`account: acct_…`); others need the per-connection URL. Dedupe key: the event id (signed).
"""

from __future__ import annotations

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
    hmac_sha256,
    json_object,
    keys_from,
    topic,
    unix_seconds,
)


def stripe_topic(event_type: str) -> str:
    resource, _, action = event_type.rpartition(".")
    return topic("stripe", resource or action, action if resource else "changed")


class StripeWebhooks(WebhookProvider):
    name = "stripe"
    vault_provider = "stripe"
    signature_headers = frozenset({"stripe-signature"})

    def __init__(self, tolerance: float = 300) -> None:
        self.tolerance = tolerance

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        stamp: str | None = None
        signatures: list[bytes] = []
        for item in headers.get("stripe-signature", "").split(","):
            key, sep, value = item.strip().partition("=")
            if not sep:
                continue
            if key == "t" and stamp is None:
                stamp = value
            elif key == "v1":
                signatures.append(as_bytes(value))
        signed_at = unix_seconds(stamp, "Stripe-Signature t")
        if not signatures:
            raise SignatureInvalid("signature", "Stripe-Signature has no v1 signature")
        signed = str(signed_at).encode() + b"." + body
        expected = [hmac_sha256(key, signed).hex().encode() for key in keys_from(secrets, "webhook_secret")]
        if not any(equal(e, s) for e in expected for s in signatures):
            raise SignatureInvalid("signature", "no Stripe-Signature v1 matches the body")
        check_age(signed_at, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        event = json_object(body)
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not isinstance(event_type, str):
            raise MalformedDelivery("malformed", "a Stripe event needs string id and type")
        account = event.get("account")
        obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
        subject = obj.get("id") if isinstance(obj, dict) and isinstance(obj.get("id"), str) else None
        return [InboundPart(
            account=account if isinstance(account, str) and account else None,
            delivery_id=bounded(event_id, "id"), dedupe_key=bounded(event_id, "id"),
            topic=bounded(event_type, "type"), event_type=stripe_topic(event_type),
            body=body, payload=event, subject=subject[:255] if subject else None,
        )]
