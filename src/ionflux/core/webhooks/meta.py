"""Meta / WhatsApp Cloud API: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, app secret>`.

One Meta app serves many phone numbers, so a delivery is split by the phone number each change is
about (`entry[].changes[].value.metadata.phone_number_id`, the Connection's external_id); each
workspace gets only its own changes. Topic: `platform.whatsapp.events.<field>.changed`, `field` being
Meta's change field (`messages` carries both inbound messages and status updates).

Meta signs no timestamp and no delivery id: the dedupe key is the body's SHA-256 (a retry resends the
same bytes), and the freshness check uses the newest signed `timestamp` of the messages and statuses
inside the body, refused when older than 8 days (Meta retries for up to 7 days; UNVERIFIED).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from ionflux.core.webhooks.base import (
    Handshake,
    InboundPart,
    MalformedDelivery,
    SignatureInvalid,
    WebhookProvider,
    as_bytes,
    check_age,
    digest,
    equal,
    hmac_sha256,
    json_object,
    keys_from,
    topic,
)


class WhatsAppWebhooks(WebhookProvider):
    name = "whatsapp"
    vault_provider = "whatsapp"
    signature_headers = frozenset({"x-hub-signature-256", "x-hub-signature"})

    def __init__(self, tolerance: float = 8 * 86400) -> None:
        self.tolerance = tolerance

    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        given = as_bytes(headers.get("x-hub-signature-256", ""))
        if not given.startswith(b"sha256="):
            raise SignatureInvalid("signature", "X-Hub-Signature-256 is missing or not 'sha256=<hex>'")
        try:
            signature = bytes.fromhex(given[7:].decode("ascii"))
        except ValueError:
            raise SignatureInvalid("signature", "X-Hub-Signature-256 is not hex") from None
        if not any(equal(hmac_sha256(key, body), signature) for key in keys_from(secrets, "app_secret")):
            raise SignatureInvalid("signature", "X-Hub-Signature-256 does not match the body")
        newest = _newest_timestamp(json_object(body))
        if newest is not None:
            check_age(newest, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        doc = json_object(body)
        entries = doc.get("entry")
        if not isinstance(entries, list) or not entries:
            raise MalformedDelivery("malformed", "entry must be a non-empty list")
        groups: dict[str, list[dict[str, Any]]] = {}
        fields: dict[str, set[str]] = {}
        for entry in entries:
            changes = entry.get("changes") if isinstance(entry, dict) else None
            if not isinstance(changes, list):
                raise MalformedDelivery("malformed", "entry[].changes must be a list")
            for change in changes:
                if not isinstance(change, dict) or not isinstance(change.get("field"), str):
                    raise MalformedDelivery("malformed", "entry[].changes[] must be objects with a field")
                value = change.get("value")
                metadata = value.get("metadata") if isinstance(value, dict) else None
                account = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
                account = str(account) if account else str(entry.get("id", ""))  # else: the business account
                groups.setdefault(account, []).append({"id": entry.get("id"), "changes": [change]})
                fields.setdefault(account, set()).add(change["field"])
        whole = digest(body)
        parts = []
        for account, part_entries in groups.items():
            part_doc = {"object": doc.get("object"), "entry": part_entries}
            part_body = body if len(groups) == 1 else json.dumps(part_doc, separators=(",", ":")).encode()
            field = next(iter(fields[account])) if len(fields[account]) == 1 else "webhook"
            parts.append(InboundPart(
                account=account, delivery_id=whole, dedupe_key=f"{whole}:{account}"[:255], topic=field,
                event_type=topic("whatsapp", field, "changed"), body=part_body,
                payload=doc if len(groups) == 1 else part_doc, subject=account[:255] or None,
            ))
        return parts

    def handshake(self, query: Mapping[str, str], secrets: Mapping[str, str]) -> Handshake | None:
        expected = secrets.get("verify_token", "")
        given = query.get("hub.verify_token", "")
        if (query.get("hub.mode") == "subscribe" and expected
                and hmac.compare_digest(as_bytes(given), expected.encode())):
            return Handshake(200, query.get("hub.challenge", ""))
        return Handshake(403, "verification token mismatch")


def _newest_timestamp(doc: dict[str, Any]) -> float | None:
    newest: float | None = None
    for entry in doc.get("entry") or []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            for item in [*(value.get("messages") or []), *(value.get("statuses") or [])]:
                stamp = item.get("timestamp") if isinstance(item, dict) else None
                if isinstance(stamp, (str, int)) and str(stamp).isdigit():
                    newest = max(newest or 0.0, float(stamp))
    return newest
