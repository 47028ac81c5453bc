"""Backfill 10,000 orders from the Shopify simulator under Standard-plan GraphQL limits and compare the
elapsed time with the lower bound the rate limit allows for the same query cost, measured in the run.

    .venv/bin/python bench/shopify_backfill.py                        # 10,000 orders, Standard: 2000 / 100 pts/s
    .venv/bin/python bench/shopify_backfill.py --orders 2000 --restore 1000 --bucket 20000   # Plus, quicker

Lower bound: every point the backfill spends beyond what the bucket held at the start has to be restored
first, so no client can finish sooner than (actual cost spent - points available at start) / restore
rate. Ratio = elapsed / that bound (target <= 1.2); throttled share = THROTTLED answers / GraphQL requests
(target < 1 %). The simulator runs in its own thread, the real service (OAuth install, cost limiter fed
by throttleStatus, checkpointed pages into SQLite, events in the outbox) in the main loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx

from ionflux.core.db import Database
from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.platform import Platform
from ionflux.core.settings import Settings
from ionflux.integrations.shopify.service import ShopifyService
from ionflux.integrations.shopify.settings import ShopifySettings
from ionflux.sandbox import SimulatorServer
from ionflux.sandbox.shopify import PlanLimits, ShopifySimulator
from ionflux.sandbox.shopify_store import StoreSeed

SHOP = "bench.myshopify.com"
KEY, SECRET = "bench-key", "shpss_bench_secret_0123456789abcdef"


async def main(args: argparse.Namespace) -> int:
    sim = ShopifySimulator(KEY, SECRET, shops={SHOP: StoreSeed(orders=args.orders, products=args.products,
                                                               customers=2000)},
                           limits=PlanLimits(graphql_bucket=args.bucket, graphql_restore=args.restore))
    with tempfile.TemporaryDirectory() as tmp, SimulatorServer(sim.app, name="shopify") as server:
        settings = Settings(data_dir=Path(tmp), bus_url="embedded://", master_key_source="file")
        Database(settings.effective_database_url).upgrade()
        platform = Platform.from_settings(settings)
        await platform.vault.put(PLATFORM_WORKSPACE, "shopify", {"client_id": KEY, "client_secret": SECRET})
        shop_settings = ShopifySettings(base_url=f"{server.base_url}/shops/{{shop}}", public_url="http://127.0.0.1:9",
                                        page_size=args.page_size, line_items_per_order=args.line_items,
                                        reconcile_interval_seconds=0, graphql_bucket=args.bucket,
                                        graphql_restore_rate=args.restore, graphql_timeout_seconds=600)
        service = ShopifyService(platform, shop_settings)
        try:
            ws = (await platform.workspaces.create("bench")).id
            url = await service.connector.initiate(ws, shop=SHOP, brand_id=None)
            async with httpx.AsyncClient() as browser:
                location = (await browser.get(url)).headers["location"]
            connection = await service.connector.callback(parse_qsl(urlsplit(location).query))
            await asyncio.sleep(max(0.0, (args.bucket - sim.state(SHOP).graphql.available()) / args.restore))
            bucket = sim.state(SHOP).graphql
            available_at_start = bucket.available()
            requests0, throttled0, cost0 = (sim.stats["graphql_requests"], sim.stats["graphql_throttled"],
                                            sim.stats["graphql_cost"])
            run = await service.sync.begin(ws, connection.id)
            started = time.perf_counter()
            last = [started]

            def progress(state: object) -> None:
                now = time.perf_counter()
                if now - last[0] > 10:
                    last[0] = now
                    print(f"  {now - started:7.1f}s  orders {getattr(state, 'orders', 0):6d}", file=sys.stderr)

            run = await service.sync.run(ws, run.id, progress=progress)
            elapsed = time.perf_counter() - started
        finally:
            await service.stop()
            await platform.db.dispose()
    spent = sim.stats["graphql_cost"] - cost0
    requests = sim.stats["graphql_requests"] - requests0
    throttled = sim.stats["graphql_throttled"] - throttled0
    bound = max(0.0, spent - available_at_start) / args.restore
    print(f"orders {run.orders}  products {run.products}  pages {run.pages}  events {run.published}")
    print(f"GraphQL: {requests} requests, {throttled} throttled ({100 * throttled / max(requests, 1):.2f} %), "
          f"actual cost {spent} points, {available_at_start:.0f} available at start, restore {args.restore:g}/s")
    ratio = elapsed / bound if bound else float("nan")
    print(f"elapsed {elapsed:.1f} s   lower bound {bound:.1f} s   ratio {ratio:.3f}   (target <= 1.2, throttled < 1 %)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--bucket", type=float, default=2000.0, help="GraphQL bucket (Standard: 2000)")
    parser.add_argument("--restore", type=float, default=100.0, help="points restored per second (Standard: 100)")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--line-items", type=int, default=5)
    os.environ.setdefault("IONFLUX_LOG_LEVEL", "WARNING")
    sys.exit(asyncio.run(main(parser.parse_args())))
