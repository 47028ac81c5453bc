"""SendGrid Event Webhook: ECDSA P-256 / SHA-256 over `timestamp + body`, base64 DER signature in
`X-Twilio-Email-Event-Webhook-Signature`, timestamp in `…-Timestamp`, verified with the account's
public key (base64 DER SubjectPublicKeyInfo as SendGrid shows it, or PEM).

An account's events come to `/webhooks/sendgrid/{connection_id}`; the key is that workspace's
`sendgrid.webhook_public_key` (or the platform's, IONFLUX_SENDGRID_WEBHOOK_PUBLIC_KEY). A delivery is a
JSON array of events of mixed kinds, published as one `platform.sendgrid.events.email_events.received`
event (the email service fans it out). Dedupe key: the body's SHA-256 (SendGrid has no delivery id;
each event carries `sg_event_id`). The timestamp tolerance is 25 h because SendGrid retries for 24 h
and it is not documented whether a retry is re-signed; replays inside it are caught by the dedupe key.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from ionflux.core.webhooks.base import (
    InboundPart,
    MalformedDelivery,
    NotConfigured,
    SignatureInvalid,
    WebhookProvider,
    as_bytes,
    check_age,
    digest,
    json_body,
    topic,
    unix_seconds,
)

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"


@lru_cache(maxsize=64)
def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    try:
        if "BEGIN PUBLIC KEY" in text:
            key = load_pem_public_key(text.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        raise NotConfigured("not_configured", "the SendGrid webhook public key does not load") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured("not_configured", "the SendGrid webhook public key is not an EC key")
    return key


class SendGridWebhooks(WebhookProvider):
    name = "sendgrid"
    vault_provider = "sendgrid"
    signature_headers = frozenset({SIGNATURE})
    needs_connection_path = True

    def __init__(self, tolerance: float = 25 * 3600) -> None:
        self.tolerance = tolerance

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        if not secrets.get("webhook_public_key"):
            raise NotConfigured("not_configured", "no SendGrid webhook public key is configured")
        key = load_public_key(secrets["webhook_public_key"])
        stamp = headers.get(TIMESTAMP)
        signed_at = unix_seconds(stamp, "X-Twilio-Email-Event-Webhook-Timestamp")
        try:
            signature = base64.b64decode(as_bytes(headers.get(SIGNATURE, "")), validate=True)
            key.verify(signature, as_bytes(stamp or "") + body, ec.ECDSA(hashes.SHA256()))
        except (binascii.Error, ValueError, InvalidSignature):
            raise SignatureInvalid("signature", "X-Twilio-Email-Event-Webhook-Signature does not verify") from None
        check_age(signed_at, now, self.tolerance, future=self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        events = json_body(body)
        if not isinstance(events, list):
            raise MalformedDelivery("malformed", "a SendGrid delivery is a JSON array of events")
        whole = digest(body)
        return [InboundPart(
            account=None, delivery_id=whole, dedupe_key=whole, topic="events",
            event_type=topic("sendgrid", "email_events", "received"), body=body, payload={"events": events},
        )]

    def payload(self, body: bytes) -> object:
        return {"events": json_body(body)}
