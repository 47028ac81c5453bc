"""A webhook acknowledged just before the server is SIGKILLed is in the inbox, and is published after
the restart: the 200 is sent only once the inbox row and its outbox event are committed together."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.models import Connection, OutboxEvent
from ionflux.core.webhooks import WebhookDelivery
from ionflux.core.workspaces import WorkspaceDirectory

from .server import ServerProcess
from .webhook_helpers import SHOP, SHOPIFY_SECRET, shopify_headers


def _post_until_killed(url: str, accepted: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as http:
        for n in range(100_000):
            if stop.is_set():
                return
            body = json.dumps({"id": n, "note": "x" * 512}).encode()
            headers = shopify_headers(body, secret=SHOPIFY_SECRET, webhook_id=f"wh-{n}", event_id=f"ev-{n}")
            try:
                response = http.post(f"{url}/webhooks/shopify", content=body, headers=headers)
            except httpx.HTTPError:
                return  # the server is gone
            if response.status_code == 200:
                accepted.append(response.json()["deliveries"][0]["id"])


async def _rows(db: Database) -> tuple[dict[str, WebhookDelivery], dict[str, str]]:
    async with db.system() as session:
        inbox = {r.id: r for r in (await session.scalars(select(WebhookDelivery))).all()}
        events = {r.id: r.status for r in (await session.scalars(select(OutboxEvent))).all()}
    return inbox, events


async def test_an_acknowledged_webhook_survives_sigkill_and_is_published_after_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ionflux.db'}"
    db = Database(url)
    db.upgrade()
    created = await WorkspaceDirectory(db).create("kill")
    async with db.tenant(created.id) as session:
        session.add(Connection(provider="shopify", external_id=SHOP))
    env = {"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": url,
           "IONFLUX_BUS_URL": "embedded://", "IONFLUX_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
           "IONFLUX_LOG_LEVEL": "WARNING"}
    server = ServerProcess(env, tmp_path)
    accepted: list[str] = []
    try:
        server.start()
        stop = threading.Event()
        poster = threading.Thread(target=_post_until_killed, args=(server.url, accepted, stop))
        poster.start()
        deadline = time.monotonic() + 30
        while len(accepted) < 100 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL while deliveries are streaming in
        stop.set()
        poster.join(timeout=10)
        assert len(accepted) >= 100, f"only {len(accepted)} deliveries were accepted before the kill"

        inbox, _ = await _rows(db)
        missing = [i for i in accepted if i not in inbox]
        assert not missing, f"{len(missing)} acknowledged deliveries are not in the inbox"
        assert all(inbox[i].event_id for i in accepted)

        server.start()
        deadline = time.monotonic() + 60
        while True:
            inbox, events = await _rows(db)
            unpublished = [i for i in accepted if events.get(inbox[i].event_id or "") != "published"]
            if not unpublished:
                break
            assert time.monotonic() < deadline, f"{len(unpublished)} acknowledged deliveries never published"
            await asyncio.sleep(0.1)
        assert len({inbox[i].event_id for i in accepted}) == len(accepted)
    finally:
        server.stop()
        await db.dispose()
