"""What every webhook provider plugs in: a verifier + mapper (`WebhookProvider`), and the shared helpers.

A provider differs from another by data (headers, secret fields, tolerance) and one small class. It
verifies on the raw body bytes, in constant time, before anything is parsed (SNS, which signs fields of
its JSON body, is the one exception and says so), then maps the delivery to `InboundPart`s: which
account it belongs to, its delivery id and dedupe key, and our topic for it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

TOPIC_WORD = re.compile(r"[^a-z0-9_]+")


class WebhookRejected(Exception):
    """A delivery we refuse; `reason` labels the rejection metric, `status` is the HTTP answer."""

    status: ClassVar[int] = 400

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class SignatureInvalid(WebhookRejected):
    status = 401  # Shopify requires 401 for a bad HMAC on its compliance topics; the others accept it


class MalformedDelivery(WebhookRejected):
    status = 400


class NotConfigured(WebhookRejected):
    status = 503  # our side: no (usable) verification key; the provider should retry later


@dataclass(frozen=True)
class InboundPart:
    """One workspace's share of a verified delivery (most deliveries are exactly one part)."""

    account: str | None  # the provider's account id (Connection.external_id); None: the URL names it
    delivery_id: str
    dedupe_key: str
    topic: str  # the provider's own name for it, e.g. "orders/create"
    event_type: str  # ours: platform.<provider>.events.<resource>.<action>
    body: bytes  # what the inbox keeps (the raw body, or this part of it)
    payload: Any  # the parsed body (or part), carried as the event's data.payload
    subject: str | None = None


@dataclass(frozen=True)
class Handshake:
    status: int
    text: str


class WebhookProvider(ABC):
    name: ClassVar[str]
    vault_provider: ClassVar[str]  # whose credential holds the verification key(s)
    signature_headers: ClassVar[frozenset[str]] = frozenset()  # never stored in the inbox
    needs_connection_path: ClassVar[bool] = False  # deliveries do not name their account
    needs_secrets: ClassVar[bool] = True  # False: verified with public material only (SNS certificates)

    @abstractmethod
    async def verify(self, body: bytes, headers: Mapping[str, str], secrets: Mapping[str, str], now: float) -> None:
        """Raise SignatureInvalid unless the delivery is authentic and fresh; MalformedDelivery if unreadable."""

    @abstractmethod
    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        """Map a verified delivery; raise MalformedDelivery if it does not have the provider's shape."""

    def handshake(self, query: Mapping[str, str], secrets: Mapping[str, str]) -> Handshake | None:
        """Answer a GET verification request, or None if this provider has no such handshake."""
        return None

    def payload(self, body: bytes) -> Any:
        """The event payload for a stored body (used again when a delivery is replayed)."""
        return json_body(body)


# -- helpers shared by the providers -------------------------------------------------------------

def as_bytes(value: str) -> bytes:
    # Starlette decodes header bytes as latin-1, so this gives back exactly what was on the wire;
    # hmac.compare_digest raises on non-ASCII str, never on bytes, so a forged header stays a 401.
    return value.encode("latin-1", errors="replace")


def equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def keys_from(secrets: Mapping[str, str], *fields: str) -> list[bytes]:
    return [secrets[f].encode() for f in fields if secrets.get(f)]


def check_age(signed_at: float, now: float, tolerance: float, future: float | None = None) -> None:
    """Refuse a timestamp older than `tolerance` (or newer than `future`, when given) as a replay."""
    if now - signed_at > tolerance:
        raise SignatureInvalid("stale", f"the delivery is older than the {int(tolerance)} s tolerance (replayed?)")
    if future is not None and signed_at - now > future:
        raise SignatureInvalid("stale", "the delivery's timestamp is in the future")


def unix_seconds(value: str | None, what: str) -> int:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 12:
        raise SignatureInvalid("signature", f"{what} is missing or not a Unix timestamp")
    return int(value.strip())


def parse_time(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedDelivery("malformed", f"the body is not JSON: {exc}") from None


def json_object(body: bytes) -> dict[str, Any]:
    value = json_body(body)
    if not isinstance(value, dict):
        raise MalformedDelivery("malformed", "the body is not a JSON object")
    return value


def word(value: str, fallback: str = "unknown") -> str:
    """One topic word: lower-case letters, digits and '_' (what envelope.TOPIC_RE allows)."""
    cleaned = TOPIC_WORD.sub("_", value.lower()).strip("_")
    return cleaned[:80] or fallback


def camel_word(value: str) -> str:
    return word(re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", value))


def topic(provider: str, resource: str, action: str) -> str:
    return f"platform.{provider}.events.{word(resource)}.{word(action)}"


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def bounded(value: str, what: str, limit: int = 255) -> str:
    if not value or len(value) > limit:
        raise MalformedDelivery("malformed", f"{what} must be 1-{limit} characters")
    return value
