"""Standard Webhooks (Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> v1,<…>`
(also sent as `svix-*`). The signature is base64 HMAC-SHA256 of `"{id}.{timestamp}." + body`, keyed with
the base64 part of the `whsec_…` secret; any listed v1 may match; ±300 s tolerance like the svix library.

Senders of this scheme do not name an account, so deliveries come to `/webhooks/svix/{connection_id}`
and the secret is that workspace's `svix` credential (field `webhook_secret`). Topic: the body's `type`
(`invoice.paid` -> `platform.svix.events.invoice.paid`); dedupe key: the signed `webhook-id`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

from ionflux.core.webhooks.base import (
    InboundPart,
    MalformedDelivery,
    NotConfigured,
    SignatureInvalid,
    WebhookProvider,
    as_bytes,
    bounded,
    check_age,
    equal,
    header,
    hmac_sha256,
    json_body,
    topic,
    unix_seconds,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def signing_key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise NotConfigured("not_configured", "the stored webhook secret is not whsec_<base64>") from None


class StandardWebhooks(WebhookProvider):
    name = "svix"
    vault_provider = "svix"
    signature_headers = frozenset({"webhook-signature", "svix-signature"})
    needs_connection_path = True

    def __init__(self, tolerance: float = 300) -> None:
        self.tolerance = tolerance

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        msg_id = header(headers, "webhook-id", "svix-id")
        stamp = header(headers, "webhook-timestamp", "svix-timestamp")
        given = header(headers, "webhook-signature", "svix-signature")
        if not msg_id or not given:
            raise SignatureInvalid("signature", "webhook-id and webhook-signature are required")
        signed_at = unix_seconds(stamp, "webhook-timestamp")
        keys = [signing_key(v) for k, v in secrets.items() if k.startswith("webhook_secret") and v]
        signed = as_bytes(msg_id) + b"." + str(signed_at).encode() + b"." + body
        expected = [base64.b64encode(hmac_sha256(key, signed)) for key in keys]
        offered = [as_bytes(sig) for version, _, sig in (p.partition(",") for p in given.split(" ")) if version == "v1"]
        if not any(equal(e, o) for e in expected for o in offered):
            raise SignatureInvalid("signature", "no webhook-signature v1 matches")
        check_age(signed_at, now, self.tolerance, future=self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        msg_id = bounded(header(headers, "webhook-id", "svix-id") or "", "webhook-id")
        payload = json_body(body)
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind is not None and not isinstance(kind, str):
            raise MalformedDelivery("malformed", "type must be a string")
        kind = kind or "message"
        resource, _, action = kind.rpartition(".")
        return [InboundPart(
            account=None, delivery_id=msg_id, dedupe_key=msg_id, topic=bounded(kind, "type"),
            event_type=topic("svix", resource or action, action if resource else "received"),
            body=body, payload=payload,
        )]
