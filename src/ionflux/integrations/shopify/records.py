"""Local copies of orders and products, and the rule that publishes each change at most once.

A row remembers the newest Shopify `updated_at` an event was published for. A webhook's event is
published by the ingestion pipeline, so its consumer only moves that mark; a sync publishes a version
only if it is newer than the mark, in the same transaction that moves it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import emit
from ionflux.integrations.shopify.models import ShopifyOrder, ShopifyProduct
from ionflux.integrations.shopify.normalise import Order, Product

Origin = Literal["webhook", "backfill", "reconcile"]
SOURCE = "/integrations/shopify"


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def upsert(session: AsyncSession, connection_id: str, shop: str, record: Order | Product,
                 origin: Origin) -> bool:
    """Store `record`; publish it (unless a webhook already did) if this version is new. True if published."""
    is_order = isinstance(record, Order)
    model: type[ShopifyOrder] | type[ShopifyProduct] = ShopifyOrder if is_order else ShopifyProduct
    row: ShopifyOrder | ShopifyProduct | None = await session.scalar(
        select(model).where(model.connection_id == connection_id, model.shopify_id == record.id))
    updated = parse_time(record.updated_at)
    data = record.model_dump()
    new = row is None
    if row is None:
        row = model(connection_id=connection_id, shopify_id=record.id, data=data, source_updated_at=updated)
        if isinstance(row, ShopifyOrder) and isinstance(record, Order):
            row.created_at = parse_time(record.created_at)
        session.add(row)
    elif updated >= (_aware(row.source_updated_at) or updated):
        row.data, row.source_updated_at = data, updated
    if isinstance(row, ShopifyOrder) and isinstance(record, Order) and row.data is data:
        row.customer_id = record.customer.id if record.customer else None
    published = _aware(row.published_updated_at)
    if published is not None and updated <= published:
        return False
    row.published_updated_at = updated
    if origin == "webhook":
        return False  # the pipeline published this delivery's event
    resource = "orders" if is_order else "products"
    action = "synced" if origin == "backfill" else ("created" if new else "updated")
    emit(session, type=f"platform.shopify.events.{resource}.{action}", subject=f"{shop}/{resource}/{record.id}",
         source=SOURCE, data={"connection_id": connection_id, "shop": shop, "origin": origin,
                              resource[:-1]: data})
    return True


def redact_customer(data: dict[str, Any]) -> dict[str, Any]:
    customer = data.get("customer")
    if isinstance(customer, dict):
        data = {**data, "customer": {"id": None, "email": None, "first_name": None, "last_name": None,
                                     "phone": None}, "pii_redacted": True}
    return data
