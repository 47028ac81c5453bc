"""`ShopifyAdminClient`: the GraphQL Admin API (cost limiter) and the REST Admin API (leaky bucket).

Both go through the provider HTTP toolkit with the catalogue's Shopify profiles, re-based on
IONFLUX_SHOPIFY_BASE_URL. The cost limiter is fed by each answer's `extensions.cost.throttleStatus`
and treats `THROTTLED` (HTTP 200 or 429) as throttled; the REST limiter is fed by
`X-Shopify-Shop-Api-Call-Limit` and `Retry-After`. REST pages follow the `Link` header exactly as given.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from ionflux.core.errors import ProviderApiError
from ionflux.core.http import ProviderClient, RetryPolicy, Timeouts
from ionflux.core.http.catalogue import SHOPIFY_ADMIN_GRAPHQL, SHOPIFY_ADMIN_REST
from ionflux.integrations.shopify.queries import Page
from ionflux.integrations.shopify.settings import ShopifySettings


@dataclass(frozen=True)
class GraphQLResult:
    data: dict[str, Any]
    requested_cost: float | None
    actual_cost: float | None
    available: float | None


@dataclass(frozen=True)
class RestPage:
    body: dict[str, Any]
    next_url: str | None
    call_limit: str | None


class ShopifyAdminClient:
    def __init__(self, settings: ShopifySettings, *, registry: CollectorRegistry | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        # Throttles are waited out (the limiter pauses every caller), so a bulk read gets more attempts.
        retry = RetryPolicy(max_attempts=10, retry_statuses=frozenset({429, 503}), retry_after_cap=60.0)
        timeouts = Timeouts(total=settings.graphql_timeout_seconds)
        graphql_limits = replace(SHOPIFY_ADMIN_GRAPHQL.limiter, capacity=settings.graphql_bucket,
                                 rate=settings.graphql_restore_rate)
        rest_limits = replace(SHOPIFY_ADMIN_REST.limiter, capacity=settings.rest_bucket, rate=settings.rest_leak_rate)
        self.graphql_http = ProviderClient(
            replace(SHOPIFY_ADMIN_GRAPHQL, base_url=settings.base_url, retry=retry, timeouts=timeouts,
                    limiter=graphql_limits), registry=registry, transport=transport)
        self.rest_http = ProviderClient(
            replace(SHOPIFY_ADMIN_REST, base_url=settings.base_url, limiter=rest_limits, timeouts=timeouts,
                    retry=replace(retry, retry_statuses=frozenset({429, 500, 502, 503, 504}))),
            registry=registry, transport=transport)
        self.stats = {"graphql_calls": 0, "rest_calls": 0}

    async def aclose(self) -> None:
        await self.graphql_http.aclose()
        await self.rest_http.aclose()

    def _api(self, path: str) -> str:
        return f"/admin/api/{self.settings.api_version}/{path}"

    async def graphql(self, shop: str, token: str, page: Page) -> GraphQLResult:
        """Run one document. Queries and mutations alike are retried when throttled: Shopify refuses a
        throttled request before executing it."""
        self.stats["graphql_calls"] += 1
        response = await self.graphql_http.request(
            "POST", self._api("graphql.json"), account=shop, credential=token, idempotent=True,
            json={"query": page.document, "variables": page.variables}, cost=float(page.cost))
        body = _json(response)
        errors = body.get("errors")
        if errors:
            messages = "; ".join(str(e.get("message", e))[:200] for e in errors if isinstance(e, dict)) or str(errors)
            raise ProviderApiError(f"Shopify GraphQL error: {messages[:500]}", details={"status": 200})
        cost = ((body.get("extensions") or {}).get("cost") or {})
        status = cost.get("throttleStatus") or {}
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderApiError("Shopify GraphQL answer has no data", details={"status": response.status_code})
        return GraphQLResult(data, cost.get("requestedQueryCost"), cost.get("actualQueryCost"),
                             status.get("currentlyAvailable"))

    async def rest_get(self, shop: str, token: str, path_or_url: str,
                       params: dict[str, Any] | None = None) -> RestPage:
        self.stats["rest_calls"] += 1
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self._api(path_or_url)
        if url.startswith(("http://", "https://")):
            self._same_shop(shop, url)
        response = await self.rest_http.request("GET", url, account=shop, credential=token, params=params)
        next_url = response.links.get("next", {}).get("url")
        return RestPage(_json(response), next_url, response.headers.get("x-shopify-shop-api-call-limit"))

    async def rest_pages(self, shop: str, token: str, path: str,
                         params: dict[str, Any] | None = None) -> AsyncIterator[RestPage]:
        """Every page of a REST list: the next page is the `Link: <…>; rel="next"` URL, used as given."""
        page = await self.rest_get(shop, token, path, params)
        yield page
        while page.next_url:
            page = await self.rest_get(shop, token, page.next_url)
            yield page

    def _same_shop(self, shop: str, url: str) -> None:
        # A Link URL carries our token on the next call: it must point at this shop's API, nowhere else.
        expected = httpx.URL(self.settings.base_url.replace("{shop}", shop))
        given = httpx.URL(url)
        if (given.scheme, given.host, given.port) != (expected.scheme, expected.host, expected.port) \
                or not given.path.startswith(expected.path.rstrip("/") + "/admin/"):
            raise ProviderApiError("Shopify sent a pagination link to another host; not followed",
                                   details={"status": 200})


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise ProviderApiError("Shopify answered with a body that is not JSON",
                               details={"status": response.status_code}) from None
    if not isinstance(body, dict):
        raise ProviderApiError("Shopify answered with JSON that is not an object",
                               details={"status": response.status_code})
    return body
