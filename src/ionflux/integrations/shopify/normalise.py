"""Typed orders and products, from either of Shopify's shapes: REST/webhook JSON or GraphQL nodes.

Money is a decimal string (never a float); statuses are lower-case snake words; ids are Shopify's
numeric ids as strings. Customer fields are personal data: without the workspace's PII consent only
the customer id survives, in the normalised record and in the raw payload carried beside it.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel

REDACTED_KEYS = ("email", "contact_email", "phone", "billing_address", "shipping_address", "browser_ip",
                 "client_details", "customer_locale", "note_attributes")


class Customer(BaseModel):
    id: str | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None


class LineItem(BaseModel):
    id: str
    title: str
    quantity: int
    price: str
    sku: str | None = None
    product_id: str | None = None
    variant_id: str | None = None


class Order(BaseModel):
    id: str
    admin_graphql_api_id: str
    name: str
    created_at: str
    updated_at: str
    currency: str
    total_price: str
    subtotal_price: str | None = None
    total_tax: str | None = None
    financial_status: str | None = None
    fulfillment_status: str
    cancelled_at: str | None = None
    customer: Customer | None = None
    line_items: list[LineItem] = []
    pii_redacted: bool = False


class Variant(BaseModel):
    id: str
    title: str | None = None
    sku: str | None = None
    price: str
    inventory_quantity: int | None = None


class Product(BaseModel):
    id: str
    admin_graphql_api_id: str
    title: str
    handle: str | None = None
    status: str | None = None
    vendor: str | None = None
    product_type: str | None = None
    created_at: str
    updated_at: str
    variants: list[Variant] = []


def decimal_string(value: Any) -> str:
    """'12.5' -> '12.50'; a bad amount raises ValueError (the caller maps it to a 4xx or skips)."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a decimal amount: {str(value)[:40]!r}") from None
    if not amount.is_finite():
        raise ValueError("not a finite amount")
    return str(amount.quantize(Decimal("0.01")) if amount.as_tuple().exponent in (0, -1) else amount)


def numeric_id(value: Any) -> str:
    """`123`, `"123"` or `"gid://shopify/Order/123"` -> `"123"`."""
    text = str(value)
    return text.rsplit("/", 1)[-1] if text.startswith("gid://") else text


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _word(value: Any, default: str | None = None) -> str | None:
    return str(value).lower() if value else default


_REST_FULFILLMENT = {None: "unfulfilled", "partial": "partially_fulfilled", "fulfilled": "fulfilled",
                     "restocked": "restocked"}


def _customer(raw: Any, pii: bool) -> Customer | None:
    if not isinstance(raw, dict):
        return None
    first = raw.get("first_name", raw.get("firstName"))
    last = raw.get("last_name", raw.get("lastName"))
    cid = raw.get("legacyResourceId", raw.get("id"))
    if not pii:
        return Customer(id=numeric_id(cid) if cid is not None else None)
    return Customer(id=numeric_id(cid) if cid is not None else None, email=_str(raw.get("email")),
                    first_name=_str(first), last_name=_str(last), phone=_str(raw.get("phone")))


def order_from_rest(raw: dict[str, Any], *, pii: bool) -> Order:
    """A REST `orders.json` item or an orders/* webhook payload (the same shape)."""
    return Order(
        id=numeric_id(raw["id"]), admin_graphql_api_id=str(raw.get("admin_graphql_api_id")
                                                           or f"gid://shopify/Order/{raw['id']}"),
        name=str(raw.get("name") or ""), created_at=str(raw["created_at"]), updated_at=str(raw["updated_at"]),
        currency=str(raw.get("currency") or ""), total_price=decimal_string(raw.get("total_price", "0")),
        subtotal_price=decimal_string(raw["subtotal_price"]) if raw.get("subtotal_price") is not None else None,
        total_tax=decimal_string(raw["total_tax"]) if raw.get("total_tax") is not None else None,
        financial_status=_word(raw.get("financial_status")),
        fulfillment_status=_REST_FULFILLMENT.get(raw.get("fulfillment_status"),
                                                 str(raw.get("fulfillment_status"))),
        cancelled_at=_str(raw.get("cancelled_at")), customer=_customer(raw.get("customer"), pii),
        line_items=[LineItem(id=numeric_id(li["id"]), title=str(li.get("title") or ""), quantity=int(li["quantity"]),
                             price=decimal_string(li.get("price", "0")), sku=li.get("sku") or None,
                             product_id=_str(li.get("product_id")), variant_id=_str(li.get("variant_id")))
                    for li in raw.get("line_items") or []],
        pii_redacted=not pii,
    )


def _money(node: dict[str, Any], field: str) -> str | None:
    money = ((node.get(field) or {}).get("shopMoney") or {})
    return decimal_string(money["amount"]) if "amount" in money else None


def _nodes(connection: Any) -> list[dict[str, Any]]:
    if not isinstance(connection, dict):
        return []
    if "nodes" in connection:
        return list(connection["nodes"])
    return [edge["node"] for edge in connection.get("edges", [])]


def order_from_graphql(node: dict[str, Any], *, pii: bool) -> Order:
    total = _money(node, "totalPriceSet") or "0.00"
    shop_money = (node.get("totalPriceSet") or {}).get("shopMoney") or {}
    currency = node.get("currencyCode") or shop_money.get("currencyCode")
    return Order(
        id=numeric_id(node.get("legacyResourceId") or node["id"]), admin_graphql_api_id=str(node["id"]),
        name=str(node.get("name") or ""), created_at=str(node["createdAt"]), updated_at=str(node["updatedAt"]),
        currency=str(currency or ""), total_price=total, subtotal_price=_money(node, "subtotalPriceSet"),
        total_tax=_money(node, "totalTaxSet"), financial_status=_word(node.get("displayFinancialStatus")),
        fulfillment_status=_word(node.get("displayFulfillmentStatus"), "unfulfilled") or "unfulfilled",
        cancelled_at=_str(node.get("cancelledAt")), customer=_customer(node.get("customer"), pii),
        line_items=[LineItem(id=numeric_id(li["id"]), title=str(li.get("title") or ""), quantity=int(li["quantity"]),
                             price=_money(li, "originalUnitPriceSet") or "0.00", sku=li.get("sku") or None,
                             product_id=numeric_id(li["product"]["id"]) if li.get("product") else None,
                             variant_id=numeric_id(li["variant"]["id"]) if li.get("variant") else None)
                    for li in _nodes(node.get("lineItems"))],
        pii_redacted=not pii,
    )


def product_from_rest(raw: dict[str, Any]) -> Product:
    return Product(
        id=numeric_id(raw["id"]), admin_graphql_api_id=str(raw.get("admin_graphql_api_id")
                                                           or f"gid://shopify/Product/{raw['id']}"),
        title=str(raw.get("title") or ""), handle=raw.get("handle"), status=_word(raw.get("status")),
        vendor=raw.get("vendor"), product_type=raw.get("product_type"), created_at=str(raw["created_at"]),
        updated_at=str(raw["updated_at"]),
        variants=[Variant(id=numeric_id(v["id"]), title=v.get("title"), sku=v.get("sku") or None,
                          price=decimal_string(v.get("price", "0")), inventory_quantity=v.get("inventory_quantity"))
                  for v in raw.get("variants") or []],
    )


def product_from_graphql(node: dict[str, Any]) -> Product:
    return Product(
        id=numeric_id(node.get("legacyResourceId") or node["id"]), admin_graphql_api_id=str(node["id"]),
        title=str(node.get("title") or ""), handle=node.get("handle"), status=_word(node.get("status")),
        vendor=node.get("vendor"), product_type=node.get("productType"), created_at=str(node["createdAt"]),
        updated_at=str(node["updatedAt"]),
        variants=[Variant(id=numeric_id(v["id"]), title=v.get("title"), sku=v.get("sku") or None,
                          price=decimal_string(v.get("price", "0")), inventory_quantity=v.get("inventoryQuantity"))
                  for v in _nodes(node.get("variants"))],
    )


def redact_payload(raw: Any) -> Any:
    """The raw payload without personal data: customer reduced to its id, contact and address fields gone."""
    if not isinstance(raw, dict):
        return raw
    out = {k: v for k, v in raw.items() if k not in REDACTED_KEYS}
    if isinstance(raw.get("customer"), dict):
        out["customer"] = {"id": raw["customer"].get("id")}
    return out
