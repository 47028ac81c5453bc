"""Local copies of orders and products, and the rule that publishes each change at most once.

A row remembers the newest Shopify `updated_at` an event was published for. A webhook's event is
published by the ingestion pipeline, so its consumer only moves that mark; a sync publishes a version
only if it is newer than the mark, in the same transaction that moves it.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Insert, Table, bindparam, case, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import emit
from ionflux.core.db import TenancyViolation, scope_of
from ionflux.core.models import new_id, utcnow
from ionflux.integrations.shopify.models import ShopifyOrder, ShopifyProduct
from ionflux.integrations.shopify.normalise import Order, Product

Origin = Literal["backfill", "reconcile"]  # a webhook's record: `record_webhook_versions`
SOURCE = "/integrations/shopify"


def parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def upsert(session: AsyncSession, connection_id: str, shop: str, record: Order | Product,
                 origin: Origin) -> bool:
    """Store `record` (from a sync); publish it if this version is newer than the last published. True if so."""
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
    resource = "orders" if is_order else "products"
    action = "synced" if origin == "backfill" else ("created" if new else "updated")
    emit(session, type=f"platform.shopify.events.{resource}.{action}", subject=f"{shop}/{resource}/{record.id}",
         source=SOURCE, data={"connection_id": connection_id, "shop": shop, "origin": origin,
                              resource[:-1]: data})
    return True


async def record_webhook_versions(session: AsyncSession, versions: list[tuple[str, Order | Product]]) -> None:
    """What a webhook's consumer does with its records ((connection id, record) in delivery order): store each
    unless a newer version is stored, and move the published mark up to it (the pipeline published the
    delivery's own event). One statement per table, executed for every record in turn.

    `upsert`'s rule without its publishing decision, and without reading the row first: a webhook stream is
    one write per delivery, and the read, the ORM's change tracking and a second statement cost more than
    the write itself (measured on SQLite: 1.0 ms of CPU per delivery that way, 0.25 ms this way, less again
    when a consumer's batch of deliveries goes in one executemany).
    """
    workspace_id = scope_of(session)
    if not isinstance(workspace_id, str):
        raise TenancyViolation("a webhook's record is written in its workspace's db.tenant() session")
    stored_at = utcnow()
    orders: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    for connection_id, record in versions:
        updated = parse_time(record.updated_at)
        values: dict[str, Any] = {
            "id": new_id(), "workspace_id": workspace_id, "connection_id": connection_id, "shopify_id": record.id,
            "data": record.model_dump(), "source_updated_at": updated, "published_updated_at": updated,
            "stored_at": stored_at}
        if isinstance(record, Order):
            values["created_at"] = parse_time(record.created_at)
            values["customer_id"] = record.customer.id if record.customer else None
            orders.append(values)
        else:
            products.append(values)
    dialect = session.get_bind().dialect.name
    for is_order, rows in ((True, orders), (False, products)):
        if rows:  # a list of parameter sets: the statement runs once per row, in order (newest wins)
            await session.execute(_webhook_upsert(dialect, is_order), rows)


@functools.cache
def _webhook_upsert(dialect: str, is_order: bool) -> Insert:
    """Built once per table and dialect (building it costs more than running it)."""
    table: Table = (ShopifyOrder if is_order else ShopifyProduct).__table__  # type: ignore[assignment]
    names = ["id", "workspace_id", "connection_id", "shopify_id", "data", "source_updated_at",
             "published_updated_at", "stored_at", *(["created_at", "customer_id"] if is_order else [])]
    insert = (sqlite if dialect == "sqlite" else postgresql).insert(table).values(
        {name: bindparam(name, type_=table.c[name].type) for name in names})
    new, c = insert.excluded, table.c
    newer = new.source_updated_at >= c.source_updated_at
    kept = ["data", "source_updated_at", *(["customer_id"] if is_order else [])]
    changes: dict[str, Any] = {name: case((newer, new[name]), else_=c[name]) for name in kept}
    changes["published_updated_at"] = case(
        (or_(c.published_updated_at.is_(None), c.published_updated_at < new.published_updated_at),
         new.published_updated_at), else_=c.published_updated_at)
    changes["stored_at"] = new.stored_at
    return insert.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[c.connection_id, c.shopify_id], set_=changes,
        where=c.workspace_id == new.workspace_id)  # a row of another workspace is never touched


def redact_customer(data: dict[str, Any]) -> dict[str, Any]:
    customer = data.get("customer")
    if isinstance(customer, dict):
        data = {**data, "customer": {"id": None, "email": None, "first_name": None, "last_name": None,
                                     "phone": None}, "pii_redacted": True}
    return data
