"""Backfill and reconciliation: cursor pages from the GraphQL Admin API into the local tables.

A run walks products, then orders, sorted by `updated_at` (a record changed meanwhile moves behind the
cursor and is read again, so nothing is skipped). Each page is one transaction: the upserts, their events
(records.py: at most once per change) and the run's checkpoint (the page's endCursor) commit together,
so a process killed anywhere resumes from the last committed page with nothing lost or repeated. A
lease on the run keeps two processes from running one connection's sync at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.errors import Conflict, InvalidRequest, NotFound
from ionflux.core.models import Connection, utcnow
from ionflux.integrations.shopify import queries
from ionflux.integrations.shopify.admin import ShopifyAdminClient
from ionflux.integrations.shopify.models import ShopifyShop, ShopifySyncRun, ShopifyWorkspaceSettings
from ionflux.integrations.shopify.normalise import order_from_graphql, product_from_graphql
from ionflux.integrations.shopify.records import upsert
from ionflux.integrations.shopify.settings import ShopifySettings

log = logging.getLogger("ionflux.shopify")
TokenSource = Callable[[str, str], Awaitable[str]]
Progress = Callable[[ShopifySyncRun], None]
STAGES = ("products", "orders", "done")


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ShopifySync:
    def __init__(self, db: Database, admin: ShopifyAdminClient, tokens: TokenSource, settings: ShopifySettings,
                 *, lease: timedelta = timedelta(seconds=120), clock: Callable[[], datetime] = utcnow) -> None:
        self.db, self.admin, self.tokens, self.settings = db, admin, tokens, settings
        self.lease, self.clock = lease, clock
        self.tasks: dict[str, asyncio.Task[ShopifySyncRun]] = {}

    async def begin(self, workspace_id: str, connection_id: str, kind: str = "backfill") -> ShopifySyncRun:
        """The run to work on: a new one, or the connection's unfinished one (resumed from its checkpoint)."""
        if kind not in ("backfill", "reconcile"):
            raise InvalidRequest("kind must be backfill or reconcile", field="kind")
        now = self.clock()
        async with self.db.tenant(workspace_id) as session:
            conn = await session.get(Connection, connection_id)
            if conn is None or conn.provider != "shopify":
                raise NotFound(f"no Shopify connection {connection_id} in this workspace", field="connection_id")
            if conn.status != "active":
                raise Conflict(f"connection {connection_id} is {conn.status}; reconnect the shop first",
                               field="connection_id")
            run = await session.scalar(select(ShopifySyncRun).where(
                ShopifySyncRun.connection_id == connection_id, ShopifySyncRun.status == "running"))
            if run is not None:
                lease = _aware(run.lease_until)
                # Ours (running, or ended here without finishing): resume. Leased elsewhere: refuse.
                if connection_id not in self.tasks and lease is not None and lease > now:
                    raise Conflict(f"a {run.kind} of this connection is running in another process",
                                   field="connection_id", details={"run_id": run.id})
                run.error, run.lease_until = None, now + self.lease  # resumed: ours now
                return run
            since = None
            if kind == "reconcile":
                shop = await session.get(ShopifyShop, connection_id)
                since = _aware(shop.reconciled_until) if shop is not None else None
                if since is None:
                    raise Conflict("reconciliation needs a completed backfill first", field="kind")
            run = ShopifySyncRun(connection_id=connection_id, kind=kind, since=since, started_at=now,
                                 stage="orders" if kind == "reconcile" else "products", lease_until=now + self.lease)
            session.add(run)
            await session.flush()
        return run

    def launch(self, workspace_id: str, run: ShopifySyncRun) -> None:
        """Run in the background of this process (once per connection)."""
        task = self.tasks.get(run.connection_id)
        if task is not None and not task.done():
            return
        task = asyncio.create_task(self.run(workspace_id, run.id), name=f"shopify-sync-{run.connection_id}")
        self.tasks[run.connection_id] = task
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def stop(self, connection_id: str) -> None:
        task = self.tasks.get(connection_id)
        if task is not None and not task.done():
            task.cancel()

    async def run(self, workspace_id: str, run_id: str, progress: Progress | None = None) -> ShopifySyncRun:
        try:
            while True:
                run, more = await self._page(workspace_id, run_id)
                if progress is not None:
                    progress(run)
                if not more:
                    return run
        except asyncio.CancelledError:
            raise  # like a crash: the checkpoint of the last committed page stands
        except Exception as exc:
            await self._fail(workspace_id, run_id, exc)
            raise

    async def _page(self, workspace_id: str, run_id: str) -> tuple[ShopifySyncRun, bool]:
        async with self.db.tenant(workspace_id) as session:
            run = await session.get(ShopifySyncRun, run_id)
            if run is None:
                raise NotFound(f"no sync run {run_id}", field="run_id")
            conn = await session.get(Connection, run.connection_id)
            if run.status != "running":
                return run, False
            if conn is None or conn.status != "active":
                run.status, run.error, run.finished_at = "stopped", "connection is not active", self.clock()
                return run, False
            run.lease_until = self.clock() + self.lease
            stage, cursor, since, shop = run.stage, run.cursor, _aware(run.since), conn.external_id
            pii = bool(await session.scalar(select(ShopifyWorkspaceSettings.pii_enabled)))
            until = self._until(run)
        if stage == "done":
            return await self._finish(workspace_id, run_id), False
        token = await self.tokens(workspace_id, run.connection_id)
        search = f"updated_at:>='{_iso(since)}' updated_at:<='{_iso(until)}'" if since is not None else None
        s = self.settings
        page = (queries.products_page(s.page_size, 10, cursor, search) if stage == "products"
                else queries.orders_page(s.page_size, s.line_items_per_order, cursor, search))
        result = await self.admin.graphql(shop, token, page)
        listing: dict[str, Any] = result.data[stage]
        records = [product_from_graphql(n) if stage == "products" else order_from_graphql(n, pii=pii)
                   for n in listing["nodes"]]
        info = listing["pageInfo"]
        async with self.db.tenant(workspace_id) as session:
            run = await session.get(ShopifySyncRun, run_id)
            if run is None or run.status != "running" or (run.stage, run.cursor) != (stage, cursor):
                raise Conflict("the sync run moved on in another process", field="run_id")
            published = 0
            for record in records:
                published += await upsert(session, run.connection_id, shop, record,
                                          "backfill" if run.kind == "backfill" else "reconcile")
            run.pages += 1
            run.published += published
            if stage == "products":
                run.products += len(records)
            else:
                run.orders += len(records)
            if info.get("hasNextPage") and info.get("endCursor"):
                run.cursor = info["endCursor"]
            else:
                run.stage, run.cursor = STAGES[STAGES.index(stage) + 1], None
            run.lease_until = self.clock() + self.lease
        return run, True

    def _until(self, run: ShopifySyncRun) -> datetime:
        started = _aware(run.started_at) or self.clock()
        return started - timedelta(seconds=self.settings.reconcile_grace_seconds)

    async def _finish(self, workspace_id: str, run_id: str) -> ShopifySyncRun:
        async with self.db.tenant(workspace_id) as session:
            run = await session.get(ShopifySyncRun, run_id)
            assert run is not None
            run.status, run.finished_at, run.lease_until = "completed", self.clock(), None
            shop = await session.get(ShopifyShop, run.connection_id)
            if shop is not None:
                shop.reconciled_until = self._until(run)
        log.info("shopify sync completed", extra={"run_id": run_id, "kind": run.kind, "orders": run.orders,
                                                  "products": run.products, "published": run.published})
        return run

    async def _fail(self, workspace_id: str, run_id: str, exc: Exception) -> None:
        message = getattr(exc, "message", None) or f"{type(exc).__name__}"
        log.warning("shopify sync failed; it resumes from its checkpoint when started again",
                    extra={"run_id": run_id, "error": str(message)[:200]})
        async with self.db.tenant(workspace_id) as session:
            run = await session.get(ShopifySyncRun, run_id)
            if run is not None and run.status == "running":
                run.error, run.lease_until = str(message)[:500], None  # stays resumable

    async def resume_orphans(self) -> int:
        """Launch every run whose owner died (lease lapsed, no error recorded) from its checkpoint.
        A run that failed with an error waits for someone to start it again (POST …/sync, the CLI)."""
        now = self.clock()
        async with self.db.system() as session:
            rows = (await session.execute(select(ShopifySyncRun.workspace_id, ShopifySyncRun.connection_id).where(
                ShopifySyncRun.status == "running", ShopifySyncRun.error.is_(None),
                ShopifySyncRun.lease_until < now))).all()
        resumed = 0
        for workspace_id, connection_id in rows:
            if connection_id in self.tasks and not self.tasks[connection_id].done():
                continue
            try:
                run = await self.begin(workspace_id, connection_id)
            except (Conflict, NotFound):
                continue
            self.launch(workspace_id, run)
            resumed += 1
            log.info("shopify sync resumed from its checkpoint", extra={"run_id": run.id, "stage": run.stage})
        return resumed

    async def reconcile_all(self) -> int:
        """One reconciliation pass over every active connection with a finished backfill."""
        async with self.db.system() as session:
            rows = (await session.execute(select(Connection.workspace_id, Connection.id).join(
                ShopifyShop, ShopifyShop.connection_id == Connection.id).where(
                Connection.provider == "shopify", Connection.status == "active",
                ShopifyShop.reconciled_until.is_not(None)))).all()
        done = 0
        for workspace_id, connection_id in rows:
            try:
                run = await self.begin(workspace_id, connection_id, "reconcile")
                await self.run(workspace_id, run.id)
                done += 1
            except Conflict:
                continue
            except Exception:
                log.exception("shopify reconciliation failed", extra={"connection_id": connection_id})
        return done
