"""The Admin API side: query-HMAC agreement with the official SDK, single-flight refresh of expiring
tokens with rotation, and 429/THROTTLED storms survived inside the bucket (limits scaled down)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from urllib.parse import parse_qsl

import shopify as shopify_sdk

from ionflux.core.oauth.store import StoredTokens, load_tokens, save_tokens
from ionflux.integrations.shopify import queries
from ionflux.integrations.shopify.signing import query_hmac, signable_message, verify_query
from ionflux.sandbox.shopify import PlanLimits
from ionflux.sandbox.shopify_store import StoreSeed
from tests.shopify_env import API_KEY, API_SECRET, SHOP, ShopifyEnv, make_env_fixture

shopify = make_env_fixture()
storm = make_env_fixture(seed=StoreSeed(orders=30, products=4, customers=10),
                         limits=PlanLimits(graphql_bucket=400.0, graphql_restore=200.0, rest_bucket=10, rest_leak=20.0,
                                           throttle_status=429),
                         graphql_bucket="400", graphql_restore_rate="200", rest_bucket="10", rest_leak_rate="20")


def test_our_callback_hmac_is_the_official_sdks() -> None:
    shopify_sdk.Session.setup(api_key=API_KEY, secret=API_SECRET)
    params = {"code": "0907a61c0c8d55e99db179b68161bc00", "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ",
              "shop": "acme.myshopify.com", "state": "0.6784241404160823-Ab_cd", "timestamp": str(int(time.time()))}
    ours = query_hmac(params.items(), API_SECRET)
    assert ours == shopify_sdk.Session.calculate_hmac(params)
    assert verify_query([*params.items(), ("hmac", ours)], [API_SECRET], now=time.time(), max_age=90)


def test_the_signed_message_follows_the_documented_encoding() -> None:
    # Sorted, hmac/signature dropped, repeated keys joined with ',', spaces as %20 (API_FACTS §1).
    pairs = [("shop", "a.myshopify.com"), ("hmac", "x"), ("ids[]", "2"), ("ids[]", "1"), ("note", "a b&c"),
             ("signature", "y"), ("code", "c")]
    assert signable_message(pairs) == "code=c&ids%5B%5D=2%2C1&note=a%20b%26c&shop=a.myshopify.com"


async def test_the_simulators_callback_query_verifies(shopify: ShopifyEnv) -> None:
    callback = await shopify.consent()
    params = parse_qsl(callback.partition("?")[2])
    assert verify_query(params, [API_SECRET], now=time.time(), max_age=90)["shop"] == SHOP


async def test_an_expired_token_is_refreshed_exactly_once_under_concurrency(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    ws, name = shopify.workspace.id, f"oauth-{connection['id']}"
    before = await load_tokens(shopify.platform.vault, ws, "shopify", name)
    assert before is not None and before.expires_at is not None and before.refresh_token
    expired = StoredTokens(before.access_token, before.refresh_token, before.expires_at - timedelta(hours=2),
                           before.refresh_expires_at)
    await save_tokens(shopify.platform.vault, ws, "shopify", name, expired)

    tokens = await asyncio.gather(*(shopify.service.access_token(ws, connection["id"]) for _ in range(40)))
    assert len(set(tokens)) == 1 and tokens[0] != before.access_token
    assert shopify.sim.stats["refreshes"] == 1 and shopify.sim.stats["refresh_refused"] == 0
    after = await load_tokens(shopify.platform.vault, ws, "shopify", name)
    assert after is not None and after.refresh_token not in (None, before.refresh_token)  # rotated, newest kept
    assert before.refresh_token not in shopify.sim.refresh_tokens  # the used one is dead at Shopify
    # The refreshed token works against the Admin API.
    result = await shopify.service.admin.graphql(SHOP, tokens[0], queries.Page(queries.SHOP, {}, queries.SHOP_COST))
    assert result.data["shop"]["myshopifyDomain"] == SHOP


async def test_a_rest_429_storm_is_survived_inside_the_bucket(storm: ShopifyEnv) -> None:
    connection = await storm.connect()
    token = await storm.service.access_token(storm.workspace.id, connection["id"])
    bucket = storm.sim.state(SHOP).rest
    assert bucket.take(10)  # another worker of this app just filled the store's bucket: a storm of 429s
    pages = await asyncio.gather(*(storm.service.admin.rest_get(SHOP, token, "orders.json", {"limit": 5})
                                   for _ in range(30)))
    assert all(len(p.body["orders"]) == 5 for p in pages)
    assert storm.sim.stats["rest_requests"] == 30 + storm.sim.stats["rest_429"]
    assert 1 <= storm.sim.stats["rest_429"] <= 12  # the first wave; then every caller waits for the bucket
    assert bucket.peak <= bucket.size


async def test_rest_link_pagination_walks_every_page(storm: ShopifyEnv) -> None:
    connection = await storm.connect()
    token = await storm.service.access_token(storm.workspace.id, connection["id"])
    seen = [o["id"] async for page in storm.service.admin.rest_pages(SHOP, token, "orders.json", {"limit": 7})
            for o in page.body["orders"]]
    assert sorted(seen) == sorted(o["id"] for o in storm.sim.state(SHOP).data.orders)
    assert len(seen) == len(set(seen)) == 30


async def test_graphql_throttling_is_waited_out_and_the_limiter_learns_the_bucket(storm: ShopifyEnv) -> None:
    connection = await storm.connect()
    token = await storm.service.access_token(storm.workspace.id, connection["id"])
    page = queries.orders_page(2, 5, None, None)  # requested 64 points against a 400-point bucket
    assert storm.sim.state(SHOP).graphql.take(380)  # drained by another worker: THROTTLED (HTTP 429) at first
    sent_before = storm.sim.stats["graphql_requests"]
    results = await asyncio.gather(*(storm.service.admin.graphql(SHOP, token, page) for _ in range(8)))
    assert all(len(r.data["orders"]["nodes"]) == 2 for r in results)
    assert all(r.requested_cost == page.cost for r in results)
    throttled = storm.sim.stats["graphql_throttled"]
    assert 1 <= throttled <= 8  # only the first wave: once throttled, every caller waits for the bucket
    assert storm.sim.stats["graphql_requests"] - sent_before == 8 + throttled
