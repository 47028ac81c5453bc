"""The simulator's GraphQL Admin API: a schema subset (orders, products, shop, webhook subscriptions),
executed by graphql-core, with Shopify's calculated query cost (requested before, actual after).

Cost rules (shopify.dev "GraphQL Admin API rate limits"): scalars and enums 0, an object 1, a connection
2 + `first` (or `last`) times the cost of one node, a mutation 10; a single query may not request more
than 1000. The actual cost counts the nodes really returned.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInt,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    get_named_type,
)
from graphql.utilities import value_from_ast

SDL = """
scalar DateTime
scalar Decimal
scalar Money
scalar URL
scalar UnsignedInt64

type Query {
  shop: Shop!
  orders(first: Int, after: String, last: Int, before: String, query: String, sortKey: OrderSortKeys,
         reverse: Boolean): OrderConnection!
  products(first: Int, after: String, last: Int, before: String, query: String, sortKey: ProductSortKeys,
           reverse: Boolean): ProductConnection!
  webhookSubscriptions(first: Int, after: String, last: Int, before: String,
                       topics: [WebhookSubscriptionTopic!]): WebhookSubscriptionConnection!
}
type Mutation {
  webhookSubscriptionCreate(topic: WebhookSubscriptionTopic!,
                            webhookSubscription: WebhookSubscriptionInput!): WebhookSubscriptionCreatePayload
  webhookSubscriptionDelete(id: ID!): WebhookSubscriptionDeletePayload
}
enum OrderSortKeys { CREATED_AT UPDATED_AT ID }
enum ProductSortKeys { CREATED_AT UPDATED_AT ID TITLE }
enum WebhookSubscriptionTopic { ORDERS_CREATE ORDERS_UPDATED ORDERS_PAID ORDERS_FULFILLED ORDERS_CANCELLED
  PRODUCTS_CREATE PRODUCTS_UPDATE PRODUCTS_DELETE APP_UNINSTALLED SHOP_UPDATE CUSTOMERS_CREATE }
enum WebhookSubscriptionFormat { JSON XML }
enum ProductStatus { ACTIVE ARCHIVED DRAFT }
input WebhookSubscriptionInput { uri: String callbackUrl: URL format: WebhookSubscriptionFormat
  includeFields: [String!] }
type UserError { field: [String!] message: String! }
type WebhookSubscription { id: ID! topic: WebhookSubscriptionTopic! uri: String! format: WebhookSubscriptionFormat!
  createdAt: DateTime! }
type WebhookSubscriptionCreatePayload { webhookSubscription: WebhookSubscription userErrors: [UserError!]! }
type WebhookSubscriptionDeletePayload { deletedWebhookSubscriptionId: ID userErrors: [UserError!]! }
type PageInfo { hasNextPage: Boolean! hasPreviousPage: Boolean! startCursor: String endCursor: String }
type Shop { id: ID! name: String! email: String myshopifyDomain: String! currencyCode: String!
  ianaTimezone: String! }
type MoneyV2 { amount: Decimal! currencyCode: String! }
type MoneyBag { shopMoney: MoneyV2! presentmentMoney: MoneyV2! }
type Customer { id: ID! legacyResourceId: UnsignedInt64! email: String firstName: String lastName: String
  phone: String displayName: String! }
type Order { id: ID! legacyResourceId: UnsignedInt64! name: String! createdAt: DateTime! updatedAt: DateTime!
  cancelledAt: DateTime currencyCode: String! displayFinancialStatus: String displayFulfillmentStatus: String!
  email: String phone: String totalPriceSet: MoneyBag! subtotalPriceSet: MoneyBag totalTaxSet: MoneyBag
  customer: Customer lineItems(first: Int, after: String, last: Int, before: String): LineItemConnection! }
type LineItem { id: ID! title: String! name: String! sku: String quantity: Int! originalUnitPriceSet: MoneyBag!
  product: Product variant: ProductVariant }
type Product { id: ID! legacyResourceId: UnsignedInt64! title: String! handle: String! status: ProductStatus!
  vendor: String productType: String createdAt: DateTime! updatedAt: DateTime!
  variants(first: Int, after: String, last: Int, before: String): ProductVariantConnection! }
type ProductVariant { id: ID! legacyResourceId: UnsignedInt64! title: String! sku: String price: Money!
  inventoryQuantity: Int }
type OrderEdge { cursor: String! node: Order! }
type OrderConnection { edges: [OrderEdge!]! nodes: [Order!]! pageInfo: PageInfo! }
type ProductEdge { cursor: String! node: Product! }
type ProductConnection { edges: [ProductEdge!]! nodes: [Product!]! pageInfo: PageInfo! }
type LineItemEdge { cursor: String! node: LineItem! }
type LineItemConnection { edges: [LineItemEdge!]! nodes: [LineItem!]! pageInfo: PageInfo! }
type ProductVariantEdge { cursor: String! node: ProductVariant! }
type ProductVariantConnection { edges: [ProductVariantEdge!]! nodes: [ProductVariant!]! pageInfo: PageInfo! }
type WebhookSubscriptionEdge { cursor: String! node: WebhookSubscription! }
type WebhookSubscriptionConnection { edges: [WebhookSubscriptionEdge!]! nodes: [WebhookSubscription!]!
  pageInfo: PageInfo! }
"""

SCHEMA: GraphQLSchema = build_schema(SDL)
MAX_QUERY_COST = 1000
MUTATION_COST = 10


class QueryError(Exception):
    """A request error Shopify reports in `errors` (bad arguments, cost over the single-query maximum)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


def encode_cursor(key: Iterable[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)))
    except ValueError:
        raise QueryError(f"Invalid cursor for current pagination sort: {cursor[:40]}") from None
    if not isinstance(value, list):
        raise QueryError("Invalid cursor")
    return value


def connection(items: list[Any], args: dict[str, Any], key: Callable[[Any], list[Any]],
               render: Callable[[Any], Any]) -> dict[str, Any]:
    """A Relay connection page of `items` (already sorted by `key`), as Shopify pages them."""
    first, last = args.get("first"), args.get("last")
    if first is None and last is None:
        raise QueryError("you must provide one of first or last")
    if (first is not None and not 0 <= first <= 250) or (last is not None and not 0 <= last <= 250):
        raise QueryError("first and last must be between 0 and 250")
    if args.get("reverse"):
        items = list(reversed(items))
    if args.get("after"):
        after = decode_cursor(args["after"])
        items = [i for i in items if (key(i) < after if args.get("reverse") else key(i) > after)]
    if args.get("before"):
        before = decode_cursor(args["before"])
        items = [i for i in items if (key(i) > before if args.get("reverse") else key(i) < before)]
    page = items[:first] if first is not None else items[max(0, len(items) - (last or 0)):]
    more_after = first is not None and len(items) > first
    more_before = last is not None and len(items) > (last or 0)
    edges = [{"cursor": encode_cursor(key(i)), "node": render(i)} for i in page]
    return {"edges": edges, "nodes": [e["node"] for e in edges],
            "pageInfo": {"hasNextPage": more_after, "hasPreviousPage": more_before or bool(args.get("after")),
                         "startCursor": edges[0]["cursor"] if edges else None,
                         "endCursor": edges[-1]["cursor"] if edges else None}}


# -- cost -------------------------------------------------------------------------------------------

class CostCalculator:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode],
                 variables: dict[str, Any]) -> None:
        self.schema, self.fragments, self.variables = schema, fragments, variables

    def fields(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        out: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                out.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                out.extend(self.fields(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    out.extend(self.fields(fragment.selection_set))
        return out

    def _size(self, node: FieldNode) -> int:
        for arg in node.arguments or ():
            if arg.name.value in ("first", "last"):
                value = value_from_ast(arg.value, GraphQLInt, self.variables)
                if isinstance(value, int):
                    return value
        return 0

    def operation(self, op: OperationDefinitionNode) -> int:
        if op.operation.value == "mutation":
            return MUTATION_COST * len(self.fields(op.selection_set))
        root = self.schema.query_type
        assert root is not None
        return self.requested(op.selection_set, root)

    def requested(self, selection_set: SelectionSetNode | None, parent: GraphQLObjectType) -> int:
        total = 0
        for node in self.fields(selection_set):
            field = parent.fields.get(node.name.value)
            if field is None:
                continue
            named = get_named_type(field.type)
            if is_connection(named):
                total += 2 + self._size(node) * self.node_cost(node, named)
            elif isinstance(named, GraphQLObjectType):
                total += 1 + self.requested(node.selection_set, named)
        return total

    def node_cost(self, node: FieldNode, connection_type: GraphQLNamedType) -> int:
        item = _node_type(connection_type)
        costs = [0]
        for child in self.fields(node.selection_set):
            if child.name.value == "nodes":
                costs.append(1 + self.requested(child.selection_set, item))
            elif child.name.value == "edges":
                for grand in self.fields(child.selection_set):
                    if grand.name.value == "node":
                        costs.append(1 + self.requested(grand.selection_set, item))
        return max(costs)

    def actual(self, selection_set: SelectionSetNode | None, parent: GraphQLObjectType, data: Any) -> int:
        if not isinstance(data, dict):
            return 0
        total = 0
        for node in self.fields(selection_set):
            field = parent.fields.get(node.name.value)
            value = data.get(node.alias.value if node.alias else node.name.value)
            if field is None or value is None:
                continue
            named = get_named_type(field.type)
            if is_connection(named):
                total += 2 + self._returned(node, named, value)
            elif isinstance(named, GraphQLObjectType):
                total += 1 + self.actual(node.selection_set, named, value)
        return total

    def _returned(self, node: FieldNode, connection_type: GraphQLNamedType, value: dict[str, Any]) -> int:
        item = _node_type(connection_type)
        best = 0
        for child in self.fields(node.selection_set):
            key = child.alias.value if child.alias else child.name.value
            if child.name.value == "nodes":
                best = max(best, sum(1 + self.actual(child.selection_set, item, n) for n in value.get(key) or []))
            elif child.name.value == "edges":
                for grand in self.fields(child.selection_set):
                    if grand.name.value == "node":
                        gk = grand.alias.value if grand.alias else "node"
                        best = max(best, sum(1 + self.actual(grand.selection_set, item, e.get(gk))
                                             for e in value.get(key) or []))
        return best


def is_connection(named: GraphQLNamedType) -> bool:
    return isinstance(named, GraphQLObjectType) and named.name.endswith("Connection")


def _node_type(connection_type: GraphQLNamedType) -> GraphQLObjectType:
    assert isinstance(connection_type, GraphQLObjectType)
    item = get_named_type(connection_type.fields["nodes"].type)
    assert isinstance(item, GraphQLObjectType)
    return item
