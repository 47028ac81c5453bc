"""A Shopify our code cannot tell from the real one on the paths it uses (API_FACTS §1), on loopback.

Every shop lives under `/shops/{shop}` (so IONFLUX_SHOPIFY_BASE_URL=http://127.0.0.1:PORT/shops/{shop}):
- OAuth: `GET …/admin/oauth/authorize` consents at once and redirects with `code, hmac, host, shop, state,
  timestamp` (hex HMAC over the sorted query); `POST …/admin/oauth/access_token` exchanges the code (JSON or
  form, no grant_type; `expiring: 1` gives a 1 h token plus a rotating refresh token) and refreshes.
- GraphQL Admin `POST …/admin/api/{version}/graphql.json` (shopify_graphql.py) with the cost bucket per
  app and shop: `extensions.cost`, THROTTLED errors (HTTP 200, or 429 if configured), MAX_COST_EXCEEDED.
- REST Admin `GET …/admin/api/{version}/{shop,orders,products}.json` with the leaky bucket
  (`X-Shopify-Shop-Api-Call-Limit`, 429 + `Retry-After`) and `Link` / `page_info` pagination.
- Webhooks: subscriptions made through GraphQL get signed deliveries (`sandbox/webhook_sender.py`),
  retried, and now and then sent twice, as Shopify does; `uninstall()` sends app/uninstalled.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ionflux.sandbox.shopify_api import AdminApi, Bucket
from ionflux.sandbox.shopify_store import ShopData, StoreSeed, build_store, iso, make_order
from ionflux.sandbox.webhook_sender import DeliveryResult, WebhookSender, shopify_signer

TOPIC_NAMES = {"ORDERS_CREATE": "orders/create", "ORDERS_UPDATED": "orders/updated", "ORDERS_PAID": "orders/paid",
               "ORDERS_FULFILLED": "orders/fulfilled", "ORDERS_CANCELLED": "orders/cancelled",
               "PRODUCTS_CREATE": "products/create", "PRODUCTS_UPDATE": "products/update",
               "PRODUCTS_DELETE": "products/delete", "APP_UNINSTALLED": "app/uninstalled",
               "SHOP_UPDATE": "shop/update", "CUSTOMERS_CREATE": "customers/create"}


@dataclass(frozen=True)
class PlanLimits:
    """Standard plan by default (API_FACTS §1); tests shrink them so throttling happens at once."""

    graphql_bucket: float = 2000.0
    graphql_restore: float = 100.0
    rest_bucket: int = 40
    rest_leak: float = 2.0
    throttle_status: int = 200  # THROTTLED comes with 200 (or 429: API_FACTS says handle both)


@dataclass
class Grant:
    shop: str
    scopes: list[str]
    expires_at: float | None = None
    active: bool = True


@dataclass
class ShopState:
    data: ShopData
    graphql: Bucket
    rest: Bucket
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    installed: bool = True


class ShopifySimulator:
    def __init__(self, api_key: str, api_secret: str, *, shops: dict[str, StoreSeed] | None = None,
                 limits: PlanLimits | None = None, access_ttl: int = 3600, refresh_ttl: int = 90 * 86400,
                 sender: WebhookSender | None = None, duplicate_rate: float = 0.0, seed: int = 7,
                 clock: Callable[[], float] = time.time, now: datetime | None = None) -> None:
        self.api_key, self.api_secret = api_key, api_secret
        self.limits = limits or PlanLimits()
        self.access_ttl, self.refresh_ttl = access_ttl, refresh_ttl
        self.sender = sender or WebhookSender(max_attempts=8, backoff_base=0.05, backoff_cap=1.0)
        self.duplicate_rate = duplicate_rate
        self.rng = random.Random(seed)  # noqa: S311 (simulated data, not secrets)
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.shops: dict[str, ShopState] = {}
        for domain, store_seed in (shops or {"acme.myshopify.com": StoreSeed()}).items():
            self.add_shop(domain, store_seed)
        self._codes: dict[str, tuple[Grant, float, bool]] = {}
        self.access_tokens: dict[str, Grant] = {}
        self.refresh_tokens: dict[str, Grant] = {}
        self.deliveries: list[tuple[str, str, DeliveryResult]] = []  # (topic, uri, result)
        api = AdminApi(self)
        prefix = "/shops/{shop}/admin"
        self.app = Starlette(routes=[
            Route(prefix + "/oauth/authorize", self._authorize, methods=["GET"]),
            Route(prefix + "/oauth/access_token", self._token, methods=["POST"]),
            Route(prefix + "/api/{version}/graphql.json", api.graphql, methods=["POST"]),
            Route(prefix + "/api/{version}/{resource:path}.json", api.rest, methods=["GET"]),
        ])

    def add_shop(self, domain: str, seed: StoreSeed) -> ShopState:
        lim = self.limits
        state = ShopState(build_store(domain, seed, self.now),
                          Bucket(lim.graphql_bucket, lim.graphql_restore, self.clock),
                          Bucket(float(lim.rest_bucket), lim.rest_leak, self.clock, leaky=True))
        self.shops[domain] = state
        return state

    # -- OAuth -------------------------------------------------------------------------------------
    def signed_query(self, params: dict[str, str]) -> str:
        """The query string Shopify puts on a redirect: params plus `hmac` (hex, sorted `k=v` joined by &)."""
        message = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        digest = hmac.new(self.api_secret.encode(), message.encode(), hashlib.sha256).hexdigest()
        return urlencode({**params, "hmac": digest})

    async def _authorize(self, request: Request) -> Response:
        shop, q = request.path_params["shop"], request.query_params
        if shop not in self.shops:
            return JSONResponse({"errors": "Not Found"}, status_code=404)
        if q.get("client_id") != self.api_key:
            return JSONResponse({"errors": "Invalid API key"}, status_code=400)
        redirect_uri = q.get("redirect_uri", "")
        if urlsplit(redirect_uri).scheme not in ("http", "https"):
            return JSONResponse({"errors": "redirect_uri is not whitelisted"}, status_code=400)
        scopes = [s for s in q.get("scope", "").split(",") if s]
        per_user = q.get("grant_options[]") == "per-user"
        code = secrets.token_hex(16)
        self._codes[code] = (Grant(shop, scopes), self.clock(), per_user)
        self.shops[shop].installed = True
        host = base64.b64encode(f"admin.shopify.com/store/{shop.split('.')[0]}".encode()).decode().rstrip("=")
        params = {"code": code, "host": host, "shop": shop, "state": q.get("state", ""),
                  "timestamp": str(int(self.clock()))}
        return RedirectResponse(f"{redirect_uri}?{self.signed_query(params)}", status_code=302)

    async def _token(self, request: Request) -> Response:
        shop = request.path_params["shop"]
        raw = await request.body()
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                return _oauth_error(400, "invalid_request", "body is not JSON")
        else:
            body = dict(parse_qsl(raw.decode()))
        if not isinstance(body, dict) or body.get("client_id") != self.api_key \
                or not hmac.compare_digest(str(body.get("client_secret", "")), self.api_secret):
            return _oauth_error(401, "invalid_client", "client authentication failed")
        if body.get("grant_type") == "refresh_token":
            return self._refresh(shop, str(body.get("refresh_token", "")))
        entry = self._codes.get(str(body.get("code", "")))
        if entry is None or entry[0].shop != shop or entry[1] < self.clock() - 600:
            return _oauth_error(400, "invalid_request", "The authorization code was not found or was already used")
        del self._codes[str(body["code"])]  # single use
        grant, _, per_user = entry
        self.stats["code_exchanges"] += 1
        expiring = str(body.get("expiring", "0")) == "1"
        return JSONResponse(self._issue(grant, expiring=expiring or per_user, refresh=expiring and not per_user))

    def _issue(self, grant: Grant, *, expiring: bool, refresh: bool) -> dict[str, Any]:
        token = "shpat_" + secrets.token_hex(16)
        now = self.clock()
        self.access_tokens[token] = Grant(grant.shop, grant.scopes, now + self.access_ttl if expiring else None)
        answer: dict[str, Any] = {"access_token": token, "scope": ",".join(grant.scopes)}
        if expiring:
            answer["expires_in"] = self.access_ttl
        if refresh:
            refresh_token = "shprt_" + secrets.token_hex(16)
            self.refresh_tokens[refresh_token] = Grant(grant.shop, grant.scopes, now + self.refresh_ttl)
            answer.update(refresh_token=refresh_token, refresh_token_expires_in=self.refresh_ttl)
        return answer

    def _refresh(self, shop: str, refresh_token: str) -> Response:
        grant = self.refresh_tokens.pop(refresh_token, None)  # rotation: a refresh token works once
        if grant is None or grant.shop != shop or not grant.active or (grant.expires_at or 0) <= self.clock():
            self.stats["refresh_refused"] += 1
            return _oauth_error(400, "invalid_grant", "refresh token is invalid, expired or already used")
        self.stats["refreshes"] += 1
        return JSONResponse(self._issue(grant, expiring=True, refresh=True))

    def grant_for(self, token: str | None, shop: str) -> Grant | None:
        grant = self.access_tokens.get(token or "")
        if grant is None or grant.shop != shop or not grant.active or not self.shops[shop].installed:
            return None
        if grant.expires_at is not None and grant.expires_at <= self.clock():
            return None
        return grant

    # -- store changes and webhooks ----------------------------------------------------------------
    def state(self, shop: str) -> ShopState:
        return self.shops[shop]

    def create_order(self, shop: str) -> dict[str, Any]:
        data = self.shops[shop].data
        number = max((o["order_number"] for o in data.orders), default=1000) + 1
        now = datetime.now(UTC).replace(microsecond=0)
        order = make_order(data, self.rng, number, now, now)
        data.orders.append(order)
        return order

    def update_order(self, shop: str, order_id: int, **changes: Any) -> dict[str, Any]:
        order = next(o for o in self.shops[shop].data.orders if o["id"] == order_id)
        order.update(changes)
        stamp = max(datetime.now(UTC), datetime.fromisoformat(order["updated_at"]) + timedelta(seconds=1))
        order["updated_at"] = iso(stamp)
        return order

    async def emit(self, shop: str, topic: str, payload: dict[str, Any], *,
                   event_id: str | None = None) -> list[DeliveryResult]:
        """Deliver `topic` to every subscription of the shop, signed, retried, sometimes twice."""
        event_id = event_id or str(uuid.uuid4())
        results = []
        for sub in list(self.shops[shop].subscriptions.values()):
            if TOPIC_NAMES[sub["topic"]] == topic:
                results.append(await self.deliver(sub["uri"], shop, topic, payload, event_id=event_id))
        return results

    async def deliver(self, uri: str, shop: str, topic: str, payload: dict[str, Any], *,
                      event_id: str | None = None, secret: str | None = None) -> DeliveryResult:
        body = json.dumps(payload).encode()
        signer = shopify_signer(secret or self.api_secret, topic=topic, shop=shop, event_id=event_id)
        result = await self.sender.send(uri, body, signer)
        self.stats["webhooks_sent"] += result.attempts
        if result.delivered and self.rng.random() < self.duplicate_rate:
            self.stats["webhooks_duplicated"] += 1
            await self.sender.send(uri, body, signer)
        self.deliveries.append((topic, uri, result))
        return result

    async def uninstall(self, shop: str) -> list[DeliveryResult]:
        state = self.shops[shop]
        results = await self.emit(shop, "app/uninstalled", state.data.shop_payload())
        state.installed = False
        for grant in [*self.access_tokens.values(), *self.refresh_tokens.values()]:
            if grant.shop == shop:
                grant.active = False
        state.subscriptions.clear()
        return results

    def order_total(self, shop: str) -> Decimal:
        return sum((Decimal(o["total_price"]) for o in self.shops[shop].data.orders), Decimal(0))


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def demo_app() -> Starlette:
    """For `ionflux sandbox`: the demo app credentials, one seeded shop (acme.myshopify.com)."""
    from ionflux.sandbox.catalog import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

    return ShopifySimulator(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, duplicate_rate=0.05).app
