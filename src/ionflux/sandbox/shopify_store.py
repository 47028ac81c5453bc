"""A seeded Shopify store for the simulator: products with variants, customers, and orders over 90 days.

Records are kept in Shopify's REST/webhook JSON shape (what `orders.json` and an `orders/create`
payload carry); the GraphQL side renders them as nodes. The same seed gives the same store.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

FIRST = ["Ava", "Noah", "Mia", "Liam", "Zoe", "Ethan", "Lucia", "Mateo", "Ines", "Omar", "Yuki", "Priya"]
LAST = ["Silva", "Smith", "Okafor", "Rossi", "Tanaka", "Müller", "Dubois", "Kowalski", "Haddad", "Ng"]
ITEMS = ["Linen Shirt", "Denim Jacket", "Wool Beanie", "Silk Scarf", "Canvas Tote", "Leather Belt",
         "Cotton Tee", "Rain Shell", "Merino Socks", "Chino Shorts", "Trail Runner", "Knit Cardigan"]
VENDORS = ["Northwind", "Atelier Nove", "Blue Harbor", "Sable & Co"]
FINANCIAL = [("paid", 0.8), ("pending", 0.08), ("refunded", 0.05), ("partially_refunded", 0.03),
             ("authorized", 0.04)]


def iso(moment: datetime) -> str:
    """Shopify's REST timestamps: seconds, with the shop's offset (UTC here)."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


@dataclass
class StoreSeed:
    seed: int = 7
    products: int = 40
    customers: int = 300
    orders: int = 2000
    days: int = 90
    currency: str = "USD"
    timezone: str = "America/New_York"
    name: str = "Acme Outfitters"


@dataclass
class ShopData:
    domain: str
    shop_id: int
    name: str
    currency: str
    timezone: str
    products: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def shop_payload(self) -> dict[str, Any]:
        """The Shop resource (also the app/uninstalled and shop/update payload)."""
        return {"id": self.shop_id, "name": self.name, "domain": self.domain, "myshopify_domain": self.domain,
                "currency": self.currency, "iana_timezone": self.timezone, "plan_name": "basic",
                "email": f"owner@{self.domain}"}


def build_store(domain: str, seed: StoreSeed, now: datetime) -> ShopData:
    rng = random.Random(f"{seed.seed}:{domain}")  # noqa: S311 (simulated data)
    shop = ShopData(domain, 60_000_000 + rng.randrange(1_000_000), seed.name, seed.currency, seed.timezone,
                    next_id=5_000_000_000 + rng.randrange(1_000_000) * 1000)
    start = now - timedelta(days=seed.days)
    for i in range(seed.products):
        created = start - timedelta(days=rng.randrange(30, 400))
        product_id = shop.new_id()
        title = f"{ITEMS[i % len(ITEMS)]} {i // len(ITEMS) + 1}"
        variants = []
        for size in rng.sample(["S", "M", "L", "XL"], rng.randint(1, 3)):
            price = Decimal(rng.randrange(900, 15_000)) / 100
            variants.append({"id": shop.new_id(), "product_id": product_id, "title": size,
                             "sku": f"SKU-{product_id % 100000}-{size}", "price": f"{price:.2f}",
                             "inventory_quantity": rng.randrange(0, 500)})
        shop.products.append({"id": product_id, "title": title, "handle": title.lower().replace(" ", "-"),
                              "status": "active", "vendor": rng.choice(VENDORS), "product_type": "Apparel",
                              "created_at": iso(created), "updated_at": iso(created + timedelta(days=5)),
                              "variants": variants})
    for _ in range(seed.customers):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        cid = shop.new_id()
        shop.customers.append({"id": cid, "email": f"{first.lower()}.{last.lower()}.{cid % 10000}@example.com",
                               "first_name": first, "last_name": last,
                               "phone": f"+1555{rng.randrange(1_000_000, 9_999_999)}"})
    moments = sorted(start + timedelta(seconds=rng.uniform(0, seed.days * 86400)) for _ in range(seed.orders))
    for number, created in enumerate(moments, start=1001):
        shop.orders.append(make_order(shop, rng, number, created, now))
    return shop


def make_order(shop: ShopData, rng: random.Random, number: int, created: datetime,
               now: datetime) -> dict[str, Any]:
    customer = rng.choice(shop.customers) if shop.customers else None
    lines = []
    for product in rng.sample(shop.products, min(len(shop.products), rng.choice([1, 1, 1, 2, 2, 3, 4]))):
        variant = rng.choice(product["variants"])
        lines.append({"id": shop.new_id(), "product_id": product["id"], "variant_id": variant["id"],
                      "title": product["title"], "variant_title": variant["title"], "sku": variant["sku"],
                      "quantity": rng.randint(1, 3), "price": variant["price"]})
    subtotal = sum((Decimal(li["price"]) * li["quantity"] for li in lines), Decimal(0))
    tax = (subtotal * Decimal("0.08")).quantize(Decimal("0.01"))
    financial = rng.choices([f for f, _ in FINANCIAL], [w for _, w in FINANCIAL])[0]
    fulfilled = financial == "paid" and created < now - timedelta(days=3) and rng.random() < 0.9
    updated = min(now, created + timedelta(minutes=rng.randrange(1, 600))) if fulfilled else created
    order: dict[str, Any] = {
        "id": shop.new_id(), "name": f"#{number}", "order_number": number, "created_at": iso(created),
        "updated_at": iso(updated), "processed_at": iso(created), "cancelled_at": None, "currency": shop.currency,
        "subtotal_price": f"{subtotal:.2f}", "total_tax": f"{tax:.2f}", "total_price": f"{subtotal + tax:.2f}",
        "financial_status": financial, "fulfillment_status": "fulfilled" if fulfilled else None,
        "line_items": lines, "test": False,
    }
    if customer is not None:
        order["customer"] = dict(customer)
        order["email"] = customer["email"]
        order["phone"] = customer["phone"]
        order["shipping_address"] = {"first_name": customer["first_name"], "last_name": customer["last_name"],
                                     "address1": f"{rng.randrange(1, 999)} Main St", "city": "Springfield",
                                     "country_code": "US", "zip": f"{rng.randrange(10000, 99999)}"}
    order["admin_graphql_api_id"] = f"gid://shopify/Order/{order['id']}"
    return order
