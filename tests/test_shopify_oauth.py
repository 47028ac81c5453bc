"""Installing the Shopify app: the full OAuth round trip against the simulator, and what is refused."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sqlalchemy import select

from ionflux.core.models import Connection
from ionflux.integrations.shopify.signing import query_hmac
from tests.conftest import WorkspaceHandle
from tests.shopify_env import API_KEY, API_SECRET, SHOP, ShopifyEnv, make_env_fixture

shopify = make_env_fixture()
custom_app = make_env_fixture(token_mode="non_expiring")


async def test_full_round_trip_gives_an_expiring_token_a_connection_the_shop_and_webhooks(
        shopify: ShopifyEnv) -> None:
    start = await shopify.client.get("/integrations/shopify/auth/initiate",
                                     params={"shop": SHOP, "brand_id": "brand-1"}, headers=shopify.workspace.headers)
    assert start.status_code == 302
    target = urlsplit(start.headers["location"])
    query = parse_qs(target.query)
    assert target.path == f"/shops/{SHOP}/admin/oauth/authorize"
    assert query["client_id"] == [API_KEY]
    assert query["scope"] == ["read_products,read_product_listings,read_orders,read_customers,read_inventory,"
                              "read_locales"]
    assert query["redirect_uri"] == ["https://ionflux.test/integrations/shopify/auth/callback"]
    assert len(query["state"][0]) >= 32

    connection = await shopify.connect(brand_id="brand-1")
    assert connection["shop"] == SHOP and connection["status"] == "active"
    assert connection["brand_id"] == "brand-1" and connection["setup_error"] is None
    assert "read_orders" in connection["scopes"]
    # The exchange asked for an expiring offline token: 1 h access token and a refresh token in the vault.
    exchange = [r for r in shopify.server.requests if r.path.endswith("/oauth/access_token")][-1]
    assert exchange.json() == {"client_id": API_KEY, "client_secret": API_SECRET,
                               "code": exchange.json()["code"], "expiring": 1}
    tokens = await shopify.platform.vault.get(shopify.workspace.id, "shopify", f"oauth-{connection['id']}")
    assert tokens["access_token"].startswith("shpat_") and tokens["refresh_token"].startswith("shprt_")

    shop = (await shopify.client.get(f"/v1/shopify/connections/{connection['id']}/shop",
                                     headers=shopify.workspace.headers)).json()
    assert (shop["name"], shop["currency"], shop["iana_timezone"]) == ("Acme Outfitters", "USD", "America/New_York")
    subscribed = {s["topic"]: s["uri"] for s in shopify.sim.state(SHOP).subscriptions.values()}
    assert subscribed == {t: "https://ionflux.test/webhooks/shopify" for t in (
        "ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_PAID", "ORDERS_FULFILLED", "PRODUCTS_CREATE", "PRODUCTS_UPDATE",
        "APP_UNINSTALLED", "SHOP_UPDATE")}
    assert set(shop["webhooks"]) == {"orders/create", "orders/updated", "orders/paid", "orders/fulfilled",
                                     "products/create", "products/update", "app/uninstalled", "shop/update"}


async def test_reconnecting_with_more_scopes_keeps_the_connection(shopify: ShopifyEnv,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    first = await shopify.connect()
    shopify.service.settings.scopes = [*shopify.service.settings.scopes, "read_fulfillments"]
    second = await shopify.connect()
    assert second["id"] == first["id"]
    assert "read_fulfillments" in second["scopes"] and "read_orders" in second["scopes"]
    # Webhooks are not subscribed twice.
    assert len(shopify.sim.state(SHOP).subscriptions) == 8


async def test_a_forged_callback_hmac_is_refused_and_leaves_the_state_usable(shopify: ShopifyEnv) -> None:
    callback = await shopify.consent()
    path, _, query = callback.partition("?")
    params = dict(parse_qs(query))
    flat = {k: v[0] for k, v in params.items()}
    forged = {**flat, "hmac": query_hmac([(k, v) for k, v in flat.items() if k != "hmac"], "not-the-secret")}
    refused = await shopify.client.get(f"{path}?{urlencode(forged)}")
    assert refused.status_code == 401 and "hmac" in refused.json()["error"]["message"]
    altered = await shopify.client.get(f"{path}?{urlencode({**flat, 'code': 'another'})}")
    assert altered.status_code == 401
    assert (await shopify.client.get(callback)).status_code == 200  # the genuine one still works


async def test_a_reused_state_is_refused(shopify: ShopifyEnv) -> None:
    callback = await shopify.consent()
    assert (await shopify.client.get(callback)).status_code == 200
    again = await shopify.client.get(callback)
    assert again.status_code == 400
    assert again.json()["error"]["field"] == "state"


async def test_a_stale_callback_timestamp_is_refused(shopify: ShopifyEnv) -> None:
    callback = await shopify.consent()
    path, _, query = callback.partition("?")
    flat = {k: v[0] for k, v in parse_qs(query).items()}
    flat["timestamp"] = str(int(time.time()) - 600)
    flat["hmac"] = query_hmac([(k, v) for k, v in flat.items() if k != "hmac"], API_SECRET)
    refused = await shopify.client.get(f"{path}?{urlencode(flat)}")
    assert refused.status_code == 401 and "timestamp" in refused.json()["error"]["message"]


BAD_SHOPS = ["evil.com", "acme.myshopify.com.evil.com", "https://acme.myshopify.com", "-acme.myshopify.com",
             "acme.myshopify.com/admin", "acme.myshopify.com:443", "acme myshop.myshopify.com", "",
             "acme.myshopify.com\n.evil.com", "ACME.myshopify.com@evil.com"]


async def test_a_bad_shop_domain_is_refused_before_anything_else(shopify: ShopifyEnv) -> None:
    for shop in BAD_SHOPS:
        response = await shopify.client.get("/integrations/shopify/auth/initiate", params={"shop": shop},
                                            headers=shopify.workspace.headers)
        assert response.status_code == 400, shop
        assert response.json()["error"]["field"] == "shop"
    assert not shopify.server.requests  # nothing was sent to Shopify
    bad_brand = await shopify.client.get("/integrations/shopify/auth/initiate",
                                         params={"shop": SHOP, "brand_id": "<script>"},
                                         headers=shopify.workspace.headers)
    assert bad_brand.status_code == 400 and bad_brand.json()["error"]["field"] == "brand_id"


async def test_a_callback_for_another_shop_than_the_state_is_refused(shopify: ShopifyEnv) -> None:
    callback = await shopify.consent()
    path, _, query = callback.partition("?")
    flat = {k: v[0] for k, v in parse_qs(query).items()}
    flat["shop"] = "other.myshopify.com"
    flat["hmac"] = query_hmac([(k, v) for k, v in flat.items() if k != "hmac"], API_SECRET)
    refused = await shopify.client.get(f"{path}?{urlencode(flat)}")
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "state"


async def test_initiate_needs_a_token_and_the_callers_own_workspace(shopify: ShopifyEnv,
                                                                   other_workspace: WorkspaceHandle) -> None:
    anonymous = await shopify.client.get("/integrations/shopify/auth/initiate", params={"shop": SHOP})
    assert anonymous.status_code == 401
    crossing = await shopify.client.get("/integrations/shopify/auth/initiate",
                                        params={"shop": SHOP, "workspace_id": other_workspace.id},
                                        headers=shopify.workspace.headers)
    assert crossing.status_code == 403


async def test_the_same_shop_cannot_join_a_second_workspace(shopify: ShopifyEnv,
                                                           other_workspace: WorkspaceHandle) -> None:
    await shopify.connect()
    callback = await shopify.consent(workspace=other_workspace)
    assert (await shopify.client.get(callback)).status_code == 409
    async with shopify.platform.db.system() as session:
        rows = (await session.scalars(select(Connection).where(Connection.provider == "shopify"))).all()
    assert [r.workspace_id for r in rows] == [shopify.workspace.id]


async def test_a_custom_app_gets_a_non_expiring_token(custom_app: ShopifyEnv) -> None:
    connection = await custom_app.connect()
    exchange = [r for r in custom_app.server.requests if r.path.endswith("/oauth/access_token")][-1]
    assert "expiring" not in exchange.json()
    tokens = await custom_app.platform.vault.get(custom_app.workspace.id, "shopify", f"oauth-{connection['id']}")
    assert "refresh_token" not in tokens and "expires_at" not in tokens
    assert connection["token_expires_at"] is None
