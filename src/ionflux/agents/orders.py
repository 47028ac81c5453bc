"""Orders as agents see them (`ports.Order`), from the Shopify service's normalised records and events.

The Shopify service publishes `platform.shopify.events.orders.*` with the typed record at
`data.payload.order` (money as decimal strings); reads answer the same records. Amounts become
`Decimal`, never floats.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from ionflux.agents.ports import Customer, LineItem, Order
from ionflux.core.errors import InvalidRequest


def money(value: Any, field: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidRequest(f"{field} is not a decimal amount: {str(value)[:40]!r}", field=field) from None
    if not amount.is_finite():
        raise InvalidRequest(f"{field} is not a finite amount", field=field)
    return amount


def parse_time(value: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"created_at is not an ISO 8601 time: {str(value)[:40]!r}", field="created_at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def order_from_record(record: dict[str, Any]) -> Order:
    customer = record.get("customer") if isinstance(record.get("customer"), dict) else None
    return Order(
        id=str(record["id"]), name=str(record.get("name") or record["id"]),
        created_at=parse_time(record["created_at"]), currency=str(record.get("currency") or ""),
        total_price=money(record.get("total_price", "0"), "total_price"),
        financial_status=record.get("financial_status"),
        line_items=tuple(
            LineItem(title=str(li.get("title") or ""), quantity=int(li.get("quantity") or 0),
                     price=money(li.get("price", "0"), "line_items.price"),
                     product_id=str(li["product_id"]) if li.get("product_id") is not None else None)
            for li in record.get("line_items") or []),
        customer=Customer(id=customer.get("id"), email=customer.get("email"), phone=customer.get("phone"),
                          first_name=customer.get("first_name")) if customer else None,
        cancelled_at=parse_time(record["cancelled_at"]) if record.get("cancelled_at") else None,
    )


def order_from_event(data: dict[str, Any]) -> Order | None:
    """The order an `orders.*` event is about (None if the event carries no typed order)."""
    payload = data.get("payload") if isinstance(data.get("payload"), dict) else {}
    record = (payload or {}).get("order") or data.get("order")
    return order_from_record(record) if isinstance(record, dict) else None


def connection_of(data: dict[str, Any]) -> str | None:
    value = data.get("connection_id")
    return str(value) if value else None
