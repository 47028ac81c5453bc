"""The simulator's Admin API handlers: GraphQL with the cost bucket, REST with the leaky bucket."""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from graphql import (
    ExecutionResult,
    FragmentDefinitionNode,
    GraphQLError,
    OperationDefinitionNode,
    execute,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ionflux.sandbox.shopify_graphql import (
    MAX_QUERY_COST,
    SCHEMA,
    CostCalculator,
    QueryError,
    connection,
    decode_cursor,
    encode_cursor,
)
from ionflux.sandbox.shopify_render import render_order, render_product, search_filter, sort_key, when

if TYPE_CHECKING:
    from ionflux.sandbox.shopify import ShopifySimulator, ShopState

INVALID_TOKEN = {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}


class Bucket:
    """Shopify's buckets: GraphQL points restored per second, or REST requests leaking per second."""

    def __init__(self, size: float, rate: float, clock: Callable[[], float], *, leaky: bool = False) -> None:
        self.size, self.rate, self.clock, self.leaky = size, rate, clock, leaky
        self.level = 0.0 if leaky else size  # leaky: used; cost: available
        self.at = clock()
        self.lock = threading.Lock()
        self.peak = 0.0  # highest REST level seen (never above size)

    def _tick(self) -> None:
        now = self.clock()
        elapsed, self.at = max(0.0, now - self.at), now
        self.level = max(0.0, self.level - elapsed * self.rate) if self.leaky else min(
            self.size, self.level + elapsed * self.rate)

    def available(self) -> float:
        with self.lock:
            self._tick()
            return self.level

    def take(self, amount: float) -> bool:
        with self.lock:
            self._tick()
            if self.leaky:
                if self.level + amount > self.size:
                    return False
                self.level += amount
                self.peak = max(self.peak, self.level)
                return True
            if amount > self.level:
                return False
            self.level -= amount
            return True

    def refund(self, amount: float) -> None:
        with self.lock:
            self._tick()
            self.level = min(self.size, self.level + amount)


class AdminApi:
    def __init__(self, sim: ShopifySimulator) -> None:
        self.sim = sim

    def _authorised(self, request: Request) -> tuple[ShopState | None, Response | None]:
        shop = request.path_params["shop"]
        if shop not in self.sim.shops or request.path_params["version"] not in _versions():
            return None, JSONResponse({"errors": "Not Found"}, status_code=404)
        if self.sim.grant_for(request.headers.get("x-shopify-access-token"), shop) is None:
            return None, JSONResponse(INVALID_TOKEN, status_code=401)
        return self.sim.shops[shop], None

    # -- GraphQL -----------------------------------------------------------------------------------
    async def graphql(self, request: Request) -> Response:
        state, refused = self._authorised(request)
        if refused is not None or state is None:
            return refused or Response(status_code=500)
        self.sim.stats["graphql_requests"] += 1
        try:
            body = json.loads(await request.body())
            source, variables = body["query"], body.get("variables") or {}
            document = parse(source)
        except (ValueError, KeyError, TypeError, GraphQLError) as exc:
            return JSONResponse({"errors": [{"message": f"Parse error: {exc}"}]}, status_code=200)
        problems = validate(SCHEMA, document)
        if problems:
            return JSONResponse({"errors": [p.formatted for p in problems]})
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        op = ops[0] if len(ops) == 1 else next((o for o in ops if o.name and o.name.value == body.get("operationName")),
                                                 None)
        if op is None:
            return JSONResponse({"errors": [{"message": "operationName is required with several operations"}]})
        coerced = get_variable_values(SCHEMA, op.variable_definitions or (), variables)
        if isinstance(coerced, list):
            return JSONResponse({"errors": [e.formatted for e in coerced]})
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        calc = CostCalculator(SCHEMA, fragments, dict(coerced.coerced))
        requested = calc.operation(op)
        bucket = state.graphql
        if requested > MAX_QUERY_COST:
            return JSONResponse({"errors": [{"message": f"Query cost is {requested}, which exceeds the single query "
                                             f"max cost limit ({MAX_QUERY_COST}).",
                                             "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested,
                                                            "maxCost": MAX_QUERY_COST}}],
                                 "extensions": {"cost": self._cost(requested, None, bucket)}})
        if not bucket.take(requested):
            self.sim.stats["graphql_throttled"] += 1
            return JSONResponse({"errors": [{"message": "Throttled", "extensions": {
                "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": self._cost(requested, None, bucket)}},
                status_code=self.sim.limits.throttle_status)
        result = execute(SCHEMA, document, root_value=self._root(state), variable_values=variables,
                         operation_name=body.get("operationName"))
        assert isinstance(result, ExecutionResult)
        if op.operation.value == "mutation":
            actual = requested
        else:
            assert SCHEMA.query_type is not None
            actual = calc.actual(op.selection_set, SCHEMA.query_type, result.data)
        bucket.refund(requested - actual)
        self.sim.stats["graphql_cost"] += actual
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        out["extensions"] = {"cost": self._cost(requested, actual, bucket)}
        return JSONResponse(out)

    def _cost(self, requested: int, actual: int | None, bucket: Bucket) -> dict[str, Any]:
        return {"requestedQueryCost": requested, "actualQueryCost": actual,
                "throttleStatus": {"maximumAvailable": float(bucket.size),
                                   "currentlyAvailable": math.floor(bucket.available()),
                                   "restoreRate": float(bucket.rate)}}

    def _root(self, state: ShopState) -> dict[str, Any]:
        data = state.data

        def page(records: list[dict[str, Any]], render: Callable[[dict[str, Any]], Any], args: dict[str, Any]) -> Any:
            chosen = [r for r in records if search_filter(args.get("query"))(r)]
            key = sort_key(args.get("sortKey"))
            return connection(sorted(chosen, key=key), args, key, render)

        def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
            def run(_info: Any, **args: Any) -> Any:
                try:
                    return fn(**args)
                except QueryError as exc:
                    raise GraphQLError(str(exc)) from None
            return run

        return {
            "shop": lambda _info: {"id": f"gid://shopify/Shop/{data.shop_id}", "name": data.name,
                                   "email": f"owner@{data.domain}", "myshopifyDomain": data.domain,
                                   "currencyCode": data.currency, "ianaTimezone": data.timezone},
            "orders": guarded(lambda **a: page(data.orders, lambda o: render_order(o, data), a)),
            "products": guarded(lambda **a: page(data.products, render_product, a)),
            "webhookSubscriptions": guarded(lambda **a: connection(
                list(state.subscriptions.values()), a, lambda s: [s["id"]], _render_sub)),
            "webhookSubscriptionCreate": lambda _info, **a: self._subscribe(state, a),
            "webhookSubscriptionDelete": lambda _info, **a: {
                "deletedWebhookSubscriptionId": a["id"] if state.subscriptions.pop(a["id"], None) else None,
                "userErrors": []},
        }

    def _subscribe(self, state: ShopState, args: dict[str, Any]) -> dict[str, Any]:
        given = args["webhookSubscription"]
        uri = str(given.get("uri") or given.get("callbackUrl") or "")
        parts = _split(uri)
        loopback = parts is not None and parts[1] in ("127.0.0.1", "localhost", "::1")
        if parts is None or not (parts[0] == "https" or (parts[0] == "http" and loopback)):
            return {"webhookSubscription": None,
                    "userErrors": [{"field": ["webhookSubscription", "uri"], "message": "Address protocol http:// "
                                    "is not supported"}]}
        if any(s["topic"] == args["topic"] and s["uri"] == uri for s in state.subscriptions.values()):
            taken = {"field": ["webhookSubscription", "callbackUrl"],
                     "message": "Address for this topic has already been taken"}
            return {"webhookSubscription": None, "userErrors": [taken]}
        sub_id = f"gid://shopify/WebhookSubscription/{uuid.uuid4().int % 10**12}"
        sub = {"id": sub_id, "topic": args["topic"], "uri": uri, "format": given.get("format") or "JSON",
               "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        state.subscriptions[sub_id] = sub
        return {"webhookSubscription": _render_sub(sub), "userErrors": []}

    # -- REST --------------------------------------------------------------------------------------
    async def rest(self, request: Request) -> Response:
        state, refused = self._authorised(request)
        if refused is not None or state is None:
            return refused or Response(status_code=500)
        self.sim.stats["rest_requests"] += 1
        bucket = state.rest
        if not bucket.take(1):
            self.sim.stats["rest_429"] += 1
            wait = max((bucket.available() + 1 - bucket.size) / bucket.rate, 0.1)
            return JSONResponse({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
                                 "resume uninterrupted service."}, status_code=429,
                                headers={"Retry-After": f"{math.ceil(wait * 10) / 10:.1f}",
                                         "X-Shopify-Shop-Api-Call-Limit": f"{int(bucket.size)}/{int(bucket.size)}"})
        limit_header = {"X-Shopify-Shop-Api-Call-Limit": f"{math.ceil(bucket.available())}/{int(bucket.size)}"}
        resource = request.path_params["resource"]
        data = state.data
        if resource == "shop":
            return JSONResponse({"shop": data.shop_payload()}, headers=limit_header)
        if resource not in ("orders", "products"):
            return JSONResponse({"errors": "Not Found"}, status_code=404, headers=limit_header)
        try:
            items, link = self._rest_page(request, data.orders if resource == "orders" else data.products)
        except QueryError as exc:
            return JSONResponse({"errors": str(exc)}, status_code=400, headers=limit_header)
        headers = dict(limit_header)
        if link:
            headers["Link"] = link
        return JSONResponse({resource: items}, headers=headers)

    def _rest_page(self, request: Request, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        q = request.query_params
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise QueryError("limit must be an integer") from None
        if not 1 <= limit <= 250:
            raise QueryError("limit must be between 1 and 250")
        if "page_info" in q:
            extra = set(q) - {"page_info", "limit", "fields"}
            if extra:
                raise QueryError(f"page_info cannot be passed with {sorted(extra)[0]}")
            filters, after = _page_info(q["page_info"])
        else:
            filters, after = {k: q[k] for k in ("updated_at_min", "created_at_min") if k in q}, None
        chosen = sorted((r for r in records if all(
            when(r[k.removesuffix("_min")]) >= when(v) for k, v in filters.items())), key=lambda r: r["id"])
        if after is not None:
            chosen = [r for r in chosen if r["id"] > after]
        page, more = chosen[:limit], len(chosen) > limit
        links = []
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        if more:
            token = _encode_page_info(filters, page[-1]["id"])
            links.append(f'<{base}?limit={limit}&page_info={token}>; rel="next"')
        fields = [f for f in q.get("fields", "").split(",") if f]
        items = [{k: v for k, v in r.items() if k in fields} if fields else r for r in page]
        return items, ", ".join(links)


def _render_sub(sub: dict[str, Any]) -> dict[str, Any]:
    return dict(sub)


def _split(uri: str) -> tuple[str, str] | None:
    parts = urlsplit(uri)
    return (parts.scheme, parts.hostname or "") if parts.scheme and parts.hostname else None


def _encode_page_info(filters: dict[str, str], after: int) -> str:
    return encode_cursor([filters, after])


def _page_info(token: str) -> tuple[dict[str, str], int | None]:
    value = decode_cursor(token)
    if len(value) != 2 or not isinstance(value[0], dict):
        raise QueryError("page_info is invalid")
    return value[0], int(value[1])


def _versions() -> set[str]:
    return {f"{y}-{m:02d}" for y in (2025, 2026) for m in (1, 4, 7, 10)} | {"unstable"}

