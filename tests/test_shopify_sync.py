"""Backfill and reconciliation against the simulator: every record once, resumable after a kill
mid-run, reads for agents, and orders that arrived without a webhook published by reconciliation."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select

from ionflux.integrations.shopify.models import ShopifyOrder, ShopifyProduct, ShopifySyncRun
from ionflux.sandbox.shopify import PlanLimits
from ionflux.sandbox.shopify_store import StoreSeed
from tests.conftest import WorkspaceHandle
from tests.shopify_env import SHOP, ShopifyEnv, make_env_fixture

# Plus-sized limits keep these fast; throttling itself is covered in test_shopify_admin.py.
shopify = make_env_fixture(seed=StoreSeed(orders=150, products=30, customers=40),
                           limits=PlanLimits(graphql_bucket=20000.0, graphql_restore=1000.0),
                           reconcile_grace_seconds="0", page_size="20", graphql_bucket="20000",
                           graphql_restore_rate="1000")


async def _finished(shopify: ShopifyEnv, connection_id: str) -> dict[str, object] | None:
    status = (await shopify.client.get(f"/v1/shopify/connections/{connection_id}/sync",
                                       headers=shopify.workspace.headers)).json()
    return status if status["status"] in ("completed", "failed", "stopped") else None


async def _synced_ids(shopify: ShopifyEnv, resource: str) -> Counter[str]:
    events = await shopify.events(f"platform.shopify.events.{resource}.synced")
    return Counter(e.data[resource[:-1]]["id"] for e in events)


async def test_backfill_stores_and_publishes_every_record_once(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    started = await shopify.client.post(f"/v1/shopify/connections/{connection['id']}/sync",
                                        headers=shopify.workspace.headers)
    assert started.status_code == 202 and started.json()["kind"] == "backfill"
    done = await shopify.until(lambda: _finished(shopify, connection["id"]), timeout=60)
    assert done["status"] == "completed" and done["orders"] == 150 and done["products"] == 30
    sim_orders = {str(o["id"]) for o in shopify.sim.state(SHOP).data.orders}
    assert await _synced_ids(shopify, "orders") == Counter({i: 1 for i in sim_orders})
    assert len(await _synced_ids(shopify, "products")) == 30

    page = (await shopify.client.get(f"/v1/shopify/connections/{connection['id']}/orders",
                                     params={"since": "2000-01-01T00:00:00Z", "limit": 250},
                                     headers=shopify.workspace.headers)).json()
    assert {o["id"] for o in page["orders"]} == sim_orders
    sample = next(o for o in shopify.sim.state(SHOP).data.orders if o["id"] == int(page["orders"][0]["id"]))
    assert page["orders"][0]["total_price"] == sample["total_price"]
    assert page["orders"][0]["customer"]["email"] is None  # PII off by default
    products = (await shopify.client.get(f"/v1/shopify/connections/{connection['id']}/products",
                                         headers=shopify.workspace.headers)).json()
    assert len(products["products"]) == 30 and products["products"][0]["variants"][0]["price"]


async def test_a_backfill_killed_halfway_resumes_without_duplicates_or_gaps(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    service, ws = shopify.service, shopify.workspace.id
    run = await service.sync.begin(ws, connection["id"])
    service.sync.launch(ws, run)
    base = shopify.sim.stats["graphql_requests"]
    await shopify.until(lambda: shopify.sim.stats["graphql_requests"] >= base + 5)  # products done, orders begun
    task = service.sync.tasks[connection["id"]]
    task.cancel()  # killed wherever it was: between pages, mid-request or mid-transaction
    await asyncio.gather(task, return_exceptions=True)
    async with shopify.platform.db.tenant(ws) as session:
        halfway = await session.get(ShopifySyncRun, run.id)
        stored = await session.scalar(select(func.count()).select_from(ShopifyOrder))
    assert halfway is not None and halfway.status == "running" and 0 < (stored or 0) < 150

    resumed = await shopify.client.post(f"/v1/shopify/connections/{connection['id']}/sync",
                                        headers=shopify.workspace.headers)
    assert resumed.json()["id"] == run.id  # the same run, from its checkpoint
    done = await shopify.until(lambda: _finished(shopify, connection["id"]), timeout=60)
    assert done["status"] == "completed"
    sim_orders = {str(o["id"]) for o in shopify.sim.state(SHOP).data.orders}
    assert await _synced_ids(shopify, "orders") == Counter({i: 1 for i in sim_orders})
    assert await _synced_ids(shopify, "products") == Counter(
        {str(p["id"]): 1 for p in shopify.sim.state(SHOP).data.products})
    async with shopify.platform.db.tenant(ws) as session:
        assert await session.scalar(select(func.count()).select_from(ShopifyOrder)) == 150
        assert await session.scalar(select(func.count()).select_from(ShopifyProduct)) == 30


async def test_reconciliation_publishes_only_orders_that_missed_their_webhook(shopify: ShopifyEnv) -> None:
    connection = await shopify.connect()
    await shopify.client.post(f"/v1/shopify/connections/{connection['id']}/sync", headers=shopify.workspace.headers)
    await shopify.until(lambda: _finished(shopify, connection["id"]), timeout=60)
    delivered = shopify.sim.create_order(SHOP)
    await shopify.sim.emit(SHOP, "orders/create", delivered)
    lost = shopify.sim.create_order(SHOP)  # Shopify never delivered this one's webhook
    await shopify.until(lambda: shopify.events("platform.shopify.events.orders.created"))
    await shopify.until(lambda: _row_published(shopify, str(delivered["id"])))

    assert await shopify.service.sync.reconcile_all() == 1
    created = await shopify.events("platform.shopify.events.orders.created")
    by_origin = Counter((e.data.get("origin") or "webhook", (e.data.get("order") or e.data["payload"]["order"])["id"])
                        for e in created)
    assert by_origin == Counter({("webhook", str(delivered["id"])): 1, ("reconcile", str(lost["id"])): 1})
    assert await shopify.service.sync.reconcile_all() == 1  # a second pass publishes nothing new
    assert len(await shopify.events("platform.shopify.events.orders.created")) == 2


async def test_reads_check_input_and_tenancy(shopify: ShopifyEnv, other_workspace: WorkspaceHandle) -> None:
    connection = await shopify.connect()
    url = f"/v1/shopify/connections/{connection['id']}/orders"
    bad = await shopify.client.get(url, params={"since": "yesterday"}, headers=shopify.workspace.headers)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "since"
    assert (await shopify.client.get(url, headers=other_workspace.headers)).status_code == 404
    assert (await shopify.client.post(f"/v1/shopify/connections/{connection['id']}/sync",
                                      headers=other_workspace.headers)).status_code == 404
    kind = await shopify.client.post(f"/v1/shopify/connections/{connection['id']}/sync", json={"kind": "everything"},
                                     headers=shopify.workspace.headers)
    assert kind.status_code in (400, 422)


async def _row_published(shopify: ShopifyEnv, order_id: str) -> bool:
    async with shopify.platform.db.system() as session:
        row = await session.scalar(select(ShopifyOrder).where(ShopifyOrder.shopify_id == order_id))
    return row is not None and row.published_updated_at is not None
