"""REST-shaped simulator records rendered as GraphQL Admin nodes, and the Admin search-query subset."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ionflux.sandbox.shopify_graphql import QueryError, connection
from ionflux.sandbox.shopify_store import ShopData

_TERM = re.compile(r"(updated_at|created_at):(>=|<=|>|<)'?([0-9T:+.\-Z]+)'?")


def when(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def gql_time(value: str | None) -> str | None:
    return when(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def search_filter(query: str | None) -> Callable[[dict[str, Any]], bool]:
    """The `query:` argument: `updated_at:>'…'`, `created_at:>=…` terms (AND); `status:any` is accepted."""
    terms = []
    for part in (query or "").split():
        if part.lower() in ("status:any", "and"):
            continue
        match = _TERM.fullmatch(part)
        if match is None:
            raise QueryError(f"unsupported search term in the simulator: {part[:60]}")
        try:
            terms.append((match.group(1), match.group(2), when(match.group(3))))
        except ValueError:
            raise QueryError(f"bad date in search term: {part[:60]}") from None
    ops: dict[str, Callable[[datetime, datetime], bool]] = {
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}

    def keep(record: dict[str, Any]) -> bool:
        return all(ops[op](when(record[field]), moment) for field, op, moment in terms)

    return keep


def sort_key(sort: str | None) -> Callable[[dict[str, Any]], list[Any]]:
    field = {"UPDATED_AT": "updated_at", "CREATED_AT": "created_at", "TITLE": "title"}.get(sort or "ID")
    if field is None:
        return lambda r: [r["id"]]
    if field == "title":
        return lambda r: [r["title"], r["id"]]
    return lambda r: [when(r[field]).timestamp(), r["id"]]


def _bag(amount: str | None, currency: str) -> dict[str, Any] | None:
    if amount is None:
        return None
    money = {"amount": amount, "currencyCode": currency}
    return {"shopMoney": money, "presentmentMoney": money}


def render_customer(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {"id": f"gid://shopify/Customer/{raw['id']}", "legacyResourceId": str(raw["id"]),
            "email": raw.get("email"), "firstName": raw.get("first_name"), "lastName": raw.get("last_name"),
            "phone": raw.get("phone"), "displayName": f"{raw.get('first_name', '')} {raw.get('last_name', '')}"}


def render_variant(raw: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"gid://shopify/ProductVariant/{raw['id']}", "legacyResourceId": str(raw["id"]),
            "title": raw["title"], "sku": raw.get("sku"), "price": raw["price"],
            "inventoryQuantity": raw.get("inventory_quantity")}


def render_product(raw: dict[str, Any]) -> dict[str, Any]:
    variants = raw.get("variants") or []

    def variants_page(_info: Any, **args: Any) -> dict[str, Any]:
        return connection(variants, args, lambda v: [v["id"]], render_variant)

    return {"id": f"gid://shopify/Product/{raw['id']}", "legacyResourceId": str(raw["id"]), "title": raw["title"],
            "handle": raw.get("handle"), "status": str(raw.get("status", "active")).upper(),
            "vendor": raw.get("vendor"), "productType": raw.get("product_type"),
            "createdAt": gql_time(raw["created_at"]), "updatedAt": gql_time(raw["updated_at"]),
            "variants": variants_page}


def render_order(raw: dict[str, Any], shop: ShopData) -> dict[str, Any]:
    currency = raw.get("currency") or shop.currency
    products = {p["id"]: p for p in shop.products}

    def line(li: dict[str, Any]) -> dict[str, Any]:
        product = products.get(li.get("product_id"))
        variant = next((v for v in (product or {}).get("variants", []) if v["id"] == li.get("variant_id")), None)
        return {"id": f"gid://shopify/LineItem/{li['id']}", "title": li["title"],
                "name": f"{li['title']} - {li.get('variant_title', '')}", "sku": li.get("sku"),
                "quantity": li["quantity"], "originalUnitPriceSet": _bag(li["price"], currency),
                "product": render_product(product) if product else None,
                "variant": render_variant(variant) if variant else None}

    def line_items(_info: Any, **args: Any) -> dict[str, Any]:
        return connection(raw.get("line_items") or [], args, lambda li: [li["id"]], line)

    fulfillment = {None: "UNFULFILLED", "partial": "PARTIALLY_FULFILLED"}.get(
        raw.get("fulfillment_status"), str(raw.get("fulfillment_status")).upper())
    return {"id": f"gid://shopify/Order/{raw['id']}", "legacyResourceId": str(raw["id"]), "name": raw["name"],
            "createdAt": gql_time(raw["created_at"]), "updatedAt": gql_time(raw["updated_at"]),
            "cancelledAt": gql_time(raw.get("cancelled_at")), "currencyCode": currency,
            "displayFinancialStatus": str(raw.get("financial_status") or "").upper() or None,
            "displayFulfillmentStatus": fulfillment, "email": raw.get("email"), "phone": raw.get("phone"),
            "totalPriceSet": _bag(raw["total_price"], currency),
            "subtotalPriceSet": _bag(raw.get("subtotal_price"), currency),
            "totalTaxSet": _bag(raw.get("total_tax"), currency), "customer": render_customer(raw.get("customer")),
            "lineItems": line_items}
