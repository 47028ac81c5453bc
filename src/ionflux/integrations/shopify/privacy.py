"""customers/redact beyond the local orders: the stored raw webhook bodies and the stored events.

The inbox keeps every accepted delivery's raw body (unredacted, whatever the PII setting) and the
outbox keeps every event's data (unredacted when the workspace enabled PII). When a shop asks us to
redact a customer, every such copy of that shop that concerns the customer (references its id, one
of `orders_to_redact`, or its email/phone) is rewritten as a redacted copy in the caller's (tenant)
transaction: the same rules as for PII-disabled events (`redact_payload`), applied at every level.
A copy that would still contain the customer's email or phone after that is blanked instead.
Deliveries are marked with the `ionflux-pii-redacted` header, events with `pii_redacted: true`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.models import OutboxEvent
from ionflux.core.webhooks.models import WebhookDelivery
from ionflux.integrations.shopify.normalise import numeric_id, redact_payload

REDACTED_HEADER = "ionflux-pii-redacted"
# Personal fields `redact_payload` does not name, found nested in order payloads (fulfillment destinations,
# customer addresses, names of the recipient).
EXTRA_KEYS = frozenset({"first_name", "last_name", "destination", "addresses", "default_address"})
EVENT_KEYS = ("provider", "topic", "delivery_id", "account", "connection_id", "webhook_delivery_id", "shop",
              "origin")
PAGE = 500


@dataclass(frozen=True)
class Subject:
    """Who is redacted: the customer's id, the orders Shopify listed, and contact strings to look for."""

    customer_id: str | None
    order_ids: frozenset[str]
    contacts: frozenset[str]  # lower-cased email / phone

    @classmethod
    def of(cls, customer_id: str | None, order_ids: Iterable[Any], email: Any, phone: Any) -> Subject:
        contacts = {str(v).strip().lower() for v in (email, phone) if isinstance(v, str) and v.strip()}
        return cls(customer_id, frozenset(numeric_id(o) for o in order_ids), frozenset(contacts))


@dataclass
class _Facts:
    customers: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)


def _collect(value: Any, facts: _Facts, key: str | None = None) -> None:
    if isinstance(value, dict):
        if key == "customer" and value.get("id") is not None:
            facts.customers.add(numeric_id(value["id"]))
        if key == "order" and value.get("id") is not None:
            facts.orders.add(numeric_id(value["id"]))
        for k, v in value.items():
            _collect(v, facts, str(k))
    elif isinstance(value, list):
        for item in value:
            _collect(item, facts, key)
    elif key in ("order_id", "orders_to_redact", "orders_requested") and value is not None:
        facts.orders.add(numeric_id(value))
    elif isinstance(value, str):
        facts.strings.add(value.strip().lower())


def concerns(value: Any, subject: Subject, *, order_id: Any = None) -> bool:
    """Whether a stored payload references the subject (`order_id`: the payload's own order id, if any)."""
    facts = _Facts()
    _collect(value, facts)
    if order_id is not None:
        facts.orders.add(numeric_id(order_id))
    return bool((subject.customer_id and subject.customer_id in facts.customers)
                or subject.order_ids & facts.orders or subject.contacts & facts.strings)


def scrub(value: Any) -> Any:
    """`redact_payload` at every level (customer reduced to its id, contact/address fields gone), plus names."""
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = redact_payload(value)
    return {k: v if k == "customer" else scrub(v) for k, v in out.items() if k not in EXTRA_KEYS}


def _leaks(value: Any, subject: Subject) -> bool:
    text = json.dumps(value, default=str).lower()
    return any(c in text for c in subject.contacts)


def _typed_order(order: Any) -> Any:
    """A typed order (normalise.Order dump) in its PII-disabled shape."""
    if not isinstance(order, dict):
        return order
    customer = order.get("customer")
    if isinstance(customer, dict):
        customer = {"id": customer.get("id"), "email": None, "first_name": None, "last_name": None, "phone": None}
    return {**order, "customer": customer, "pii_redacted": True}


def redact_event_data(data: dict[str, Any], subject: Subject) -> dict[str, Any]:
    typed = {k: _typed_order(data[k]) for k in ("order",) if k in data}
    payload = data.get("payload")
    out: dict[str, Any] = {**scrub({k: v for k, v in data.items() if k not in typed}), **typed, "pii_redacted": True}
    if isinstance(payload, dict):
        shaped = scrub({k: v for k, v in payload.items() if k != "order"})
        if "order" in payload:
            shaped["order"] = _typed_order(payload["order"])
        out["payload"] = {**shaped, "pii_redacted": True}
    if _leaks(out, subject):
        out = {k: data[k] for k in EVENT_KEYS if k in data} | {"pii_redacted": True, "payload_blanked": True}
    return out


def _delivery_order_id(topic: str, raw: Any) -> Any:
    return raw.get("id") if topic.startswith("orders/") and isinstance(raw, dict) else None


async def redact_deliveries(session: AsyncSession, connection_id: str, shop: str, subject: Subject) -> int:
    """Rewrite the inbox bodies of this shop that concern `subject`; the number rewritten."""
    count, after = 0, ""
    where = (WebhookDelivery.provider == "shopify",
             or_(WebhookDelivery.connection_id == connection_id, WebhookDelivery.account == shop))
    while True:
        rows = (await session.scalars(select(WebhookDelivery).where(*where, WebhookDelivery.id > after)
                                      .order_by(WebhookDelivery.id).limit(PAGE))).all()
        if not rows:
            return count
        for row in rows:
            after = row.id
            if not row.body or REDACTED_HEADER in (row.headers or {}):
                continue
            try:
                raw = json.loads(row.body)
            except ValueError:
                continue  # never stored: the pipeline only keeps parsed JSON bodies
            if not concerns(raw, subject, order_id=_delivery_order_id(row.topic, raw)):
                continue
            redacted = scrub(raw)
            body = b"{}" if _leaks(redacted, subject) else json.dumps(redacted, separators=(",", ":")).encode()
            row.body = body
            row.headers = {**(row.headers or {}), REDACTED_HEADER: "customers/redact"}
            count += 1


async def redact_events(session: AsyncSession, connection_id: str, subject: Subject) -> int:
    """Rewrite the stored Shopify events of this connection (this workspace's, by the tenant session).

    PostgreSQL: rows the relay is publishing right now (locked) are skipped rather than waited for, since
    the embedded relay waits for this very consumer; SQLite ignores `FOR UPDATE`."""
    count, after = 0, 0
    while True:
        rows = (await session.scalars(select(OutboxEvent).where(
            OutboxEvent.type.like("platform.shopify.events.%"), OutboxEvent.seq > after)
            .order_by(OutboxEvent.seq).limit(PAGE).with_for_update(skip_locked=True))).all()
        if not rows:
            return count
        for row in rows:
            after = row.seq
            data = row.data or {}
            if data.get("connection_id") != connection_id or (
                    data.get("pii_redacted") is True and not _leaks(data, subject)):
                continue  # another shop's, or already redacted
            payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
            order_id = _delivery_order_id(str(data.get("topic") or ""), (payload or {}).get("raw"))
            if not concerns(data, subject, order_id=order_id):
                continue
            row.data = redact_event_data(data, subject)
            count += 1
