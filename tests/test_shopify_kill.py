"""A backfill whose server is SIGKILLed mid-run is resumed from its checkpoint by the restarted server
(once the dead owner's lease lapses): every order stored and published exactly once, none missing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.models import OutboxEvent
from ionflux.integrations.shopify.models import ShopifySyncRun
from ionflux.sandbox import SimulatorServer
from ionflux.sandbox.shopify import PlanLimits, ShopifySimulator
from ionflux.sandbox.shopify_store import StoreSeed

from .server import ServerProcess
from .shopify_env import API_KEY, API_SECRET, SHOP


async def _poll(check: Any, timeout: float) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.05)


async def test_a_sigkilled_backfill_is_resumed_by_the_restarted_server(tmp_path: Path) -> None:
    sim = ShopifySimulator(API_KEY, API_SECRET, shops={SHOP: StoreSeed(orders=200, products=10, customers=20)},
                           limits=PlanLimits(graphql_bucket=20000.0, graphql_restore=1000.0))
    async with SimulatorServer(sim.app, name="shopify") as shopify:
        shopify.faults.latency = 0.3  # slow pages (10 of orders), so the kill lands mid-run
        env = {"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": "", "IONFLUX_LOG_LEVEL": "WARNING",
               "IONFLUX_BUS_URL": "embedded://", "IONFLUX_SHOPIFY_BASE_URL": f"{shopify.base_url}/shops/{{shop}}",
               "IONFLUX_SHOPIFY_CLIENT_ID": API_KEY, "IONFLUX_SHOPIFY_CLIENT_SECRET": API_SECRET,
               "IONFLUX_SHOPIFY_SYNC_LEASE_SECONDS": "1", "IONFLUX_SHOPIFY_PAGE_SIZE": "20",
               "IONFLUX_SHOPIFY_RECONCILE_INTERVAL_SECONDS": "0", "IONFLUX_SHOPIFY_GRAPHQL_BUCKET": "20000",
               "IONFLUX_SHOPIFY_GRAPHQL_RESTORE_RATE": "1000"}
        created = subprocess.run([sys.executable, "-m", "ionflux.cli", "workspace", "create", "kill", "--json"],
                                 env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True,
                                 timeout=120, check=True)
        headers = {"Authorization": f"Bearer {json.loads(created.stdout)['token']}"}
        first = ServerProcess({**env}, tmp_path)
        first.env["IONFLUX_SHOPIFY_PUBLIC_URL"] = first.url
        second = ServerProcess({**env}, tmp_path)
        second.env["IONFLUX_SHOPIFY_PUBLIC_URL"] = second.url
        try:
            first.start(timeout=90)
            async with httpx.AsyncClient(timeout=30) as http:
                start = await http.get(f"{first.url}/integrations/shopify/auth/initiate", params={"shop": SHOP},
                                       headers=headers)
                consent = await http.get(start.headers["location"])
                callback = urlsplit(consent.headers["location"])
                connection = (await http.get(f"{first.url}{callback.path}?{callback.query}")).json()
                status_url = f"/v1/shopify/connections/{connection['id']}/sync"
                assert (await http.post(first.url + status_url, headers=headers)).status_code == 202

                async def ordering() -> bool:
                    state = (await http.get(first.url + status_url, headers=headers)).json()
                    return bool(state["orders"] >= 20)
                await _poll(ordering, 60)
                first.kill()  # SIGKILL mid-run: the lease stays, the checkpoint is the last committed page
                halfway = await _run_state(tmp_path)
                assert halfway[0] == "running" and 20 <= halfway[1] < 200

                second.start(timeout=90)

                async def completed() -> dict[str, Any] | None:
                    state: dict[str, Any] = (await http.get(second.url + status_url, headers=headers)).json()
                    return state if state["status"] == "completed" else None
                done = await _poll(completed, 60)  # resumed by the new server once the lease lapsed
        finally:
            first.stop()
            second.stop()
    assert done["orders"] == 200 and done["products"] == 10
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'ionflux.db'}")
    try:
        async with db.system() as session:
            events = (await session.scalars(select(OutboxEvent).where(
                OutboxEvent.type == "platform.shopify.events.orders.synced"))).all()
    finally:
        await db.dispose()
    published = Counter(e.data["order"]["id"] for e in events)
    assert published == Counter({str(o["id"]): 1 for o in sim.state(SHOP).data.orders})


async def _run_state(tmp_path: Path) -> tuple[str, int]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'ionflux.db'}")
    try:
        async with db.system() as session:
            run = await session.scalar(select(ShopifySyncRun))
    finally:
        await db.dispose()
    assert run is not None
    return run.status, run.orders
