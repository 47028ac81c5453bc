"""The GraphQL Admin documents this integration sends, each with the cost Shopify will ask for it.

The requested cost is what the cost limiter reserves before a call (Shopify charges it up front and
refunds the unused part): scalars 0, objects 1, a connection 2 + first x node cost, a mutation 10.
"""

from __future__ import annotations

from dataclasses import dataclass

SHOP = "query Shop { shop { id name myshopifyDomain currencyCode ianaTimezone } }"
SHOP_COST = 1

ORDERS = """
query Orders($first: Int!, $after: String, $query: String, $lineItems: Int!) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id legacyResourceId name createdAt updatedAt cancelledAt currencyCode
      displayFinancialStatus displayFulfillmentStatus
      totalPriceSet { shopMoney { amount currencyCode } }
      customer { id email firstName lastName phone }
      lineItems(first: $lineItems) {
        nodes { id title sku quantity originalUnitPriceSet { shopMoney { amount } } product { id } variant { id } }
      }
    }
  }
}
"""

PRODUCTS = """
query Products($first: Int!, $after: String, $query: String, $variants: Int!) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id legacyResourceId title handle status vendor productType createdAt updatedAt
      variants(first: $variants) { nodes { id title sku price inventoryQuantity } }
    }
  }
}
"""

SUBSCRIPTIONS = """
query Subscriptions { webhookSubscriptions(first: 50) { nodes { id topic uri } } }
"""
SUBSCRIPTIONS_COST = 2 + 50 * 1

SUBSCRIBE = """
mutation Subscribe($topic: WebhookSubscriptionTopic!, $subscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $subscription) {
    webhookSubscription { id topic uri }
    userErrors { field message }
  }
}
"""
MUTATION_COST = 10
# A single query may request at most 1000 points (shopify.dev rate-limit docs; UNVERIFIED in API_FACTS), so
# page sizes shrink to fit rather than fail with MAX_COST_EXCEEDED.
MAX_QUERY_COST = 1000

# orders/create -> ORDERS_CREATE, as the Admin API's WebhookSubscriptionTopic enum names them.
WEBHOOK_TOPICS = ("orders/create", "orders/updated", "orders/paid", "orders/fulfilled", "products/create",
                  "products/update", "app/uninstalled", "shop/update")


def topic_enum(topic: str) -> str:
    return topic.replace("/", "_").upper()


@dataclass(frozen=True)
class Page:
    """One page request: the document, its variables and its requested cost."""

    document: str
    variables: dict[str, object]
    cost: int


def orders_page(first: int, line_items: int, after: str | None, query: str | None) -> Page:
    # per order: itself 1, totalPriceSet 2, customer 1, lineItems 2 + n x (item 1, price 2, product 1, variant 1)
    per_order = 1 + 2 + 1 + 2 + line_items * 5
    first = max(1, min(first, (MAX_QUERY_COST - 2) // per_order))
    return Page(ORDERS, {"first": first, "after": after, "query": query, "lineItems": line_items},
                2 + first * per_order)


def products_page(first: int, variants: int, after: str | None, query: str | None) -> Page:
    per_product = 1 + 2 + variants * 1
    first = max(1, min(first, (MAX_QUERY_COST - 2) // per_product))
    return Page(PRODUCTS, {"first": first, "after": after, "query": query, "variants": variants},
                2 + first * per_product)
