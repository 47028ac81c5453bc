"""The official Python SDK (ShopifyAPI) against the simulator: it accepts the callback HMAC, exchanges the
code, and reads through GraphQL and REST. The SDK builds https://{shop}.myshopify.com URLs, so a urllib
handler stands in for DNS and the sandbox's /shops/{shop} prefix (and the SDK's plain http)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import shopify

from ionflux.sandbox import SimulatorServer
from ionflux.sandbox.shopify import ShopifySimulator
from ionflux.sandbox.shopify_store import StoreSeed

KEY, SECRET, SHOP = "sdk-key", "shpss_sdk_secret_0123456789", "acme.myshopify.com"


class ToSimulator(urllib.request.BaseHandler):
    def __init__(self, base_url: str) -> None:
        self.base = base_url

    def http_request(self, request: urllib.request.Request) -> urllib.request.Request:
        parts = urlsplit(request.full_url)
        if parts.hostname == SHOP:
            request.full_url = f"{self.base}/shops/{SHOP}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        return request

    https_request = http_request


@pytest.fixture
def sim() -> Iterator[tuple[ShopifySimulator, SimulatorServer]]:
    simulator = ShopifySimulator(KEY, SECRET, shops={SHOP: StoreSeed(orders=12, products=3, customers=5)})
    server = SimulatorServer(simulator.app, name="shopify").start()
    urllib.request.install_opener(urllib.request.build_opener(ToSimulator(server.base_url)))
    shopify.Session.setup(api_key=KEY, secret=SECRET, protocol="http")
    try:
        yield simulator, server
    finally:
        shopify.Session.setup(protocol="https")
        urllib.request.install_opener(None)  # type: ignore[arg-type]
        shopify.ShopifyResource.clear_session()
        server.stop()


def test_the_official_sdk_installs_and_reads_from_the_simulator(
        sim: tuple[ShopifySimulator, SimulatorServer]) -> None:
    simulator, server = sim
    session = shopify.Session(SHOP, "unstable")
    consent = httpx.get(f"{server.base_url}/shops/{SHOP}/admin/oauth/authorize",
                        params={"client_id": KEY, "scope": "read_orders,read_products",
                                "redirect_uri": "https://app.test/cb", "state": "nonce-1"})
    params = dict(parse_qsl(urlsplit(consent.headers["location"]).query))
    assert shopify.Session.validate_hmac(params)
    assert not shopify.Session.validate_hmac({**params, "shop": "evil.myshopify.com"})
    token = session.request_token(params)  # form body, no `expiring`: a non-expiring (custom app) token
    assert token.startswith("shpat_")
    # ApiAccessScopes keeps a set: its str() order follows string hashing, so compare as sets
    assert set(str(session.access_scopes).split(",")) == {"read_orders", "read_products"}

    shopify.ShopifyResource.activate_session(session)
    answer = json.loads(shopify.GraphQL().execute(
        "query($n: Int!) { orders(first: $n) { nodes { name totalPriceSet { shopMoney { amount } } } } }",
        variables={"n": 3}))
    assert [o["name"] for o in answer["data"]["orders"]["nodes"]] == ["#1001", "#1002", "#1003"]
    assert answer["extensions"]["cost"]["throttleStatus"]["restoreRate"] == 100.0
    assert shopify.Shop.current().myshopify_domain == SHOP
    assert len(shopify.Order.find(limit=5)) == 5
    assert simulator.stats["code_exchanges"] == 1
