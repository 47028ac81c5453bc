"""One refresher per connection across every process sharing the database.

PostgreSQL: `pg_advisory_xact_lock(namespace, hash(connection_id))` held by a transaction around the
refresh. An advisory lock rather than `SELECT … FOR UPDATE` on the connection row, because the
refresher itself updates that row (status, expiry) from other sessions, and unrelated writers of the
row (webhooks, the API) must not queue behind a slow provider. Waiters block in the server, no polling.

SQLite has no row locks and a write transaction would lock the whole file (the vault write that stores
the new tokens runs in its own session and would deadlock against it). So a lease row taken by
compare-and-set: `UPDATE … SET holder = me WHERE holder IS NULL OR expires_at < now` (one statement,
atomic under SQLite's write lock). Waiters poll with capped backoff, and stop as soon as `probe`
says another process already did the work. A crashed holder is overtaken once its lease expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

from ionflux.core.db import Database
from ionflux.core.errors import ServiceUnavailable
from ionflux.core.oauth.models import OAuthRefreshLease

T = TypeVar("T")
_PG_NAMESPACE = 0x4F41  # "OA": keeps these keys apart from other advisory-lock users


def _pg_key(connection_id: str) -> int:
    return int.from_bytes(hashlib.sha256(connection_id.encode()).digest()[:4], "big", signed=True)


class ConnectionLock:
    def __init__(self, db: Database, *, lease: timedelta = timedelta(seconds=30)) -> None:
        self.db = db
        self.lease = lease

    async def run(self, workspace_id: str, connection_id: str, work: Callable[[], Awaitable[T]],
                  *, probe: Callable[[], Awaitable[T | None]]) -> T:
        """Run `work` while holding the connection's lock; a waiter that finds `probe()` answering
        (the work was done elsewhere) returns that instead of waiting on."""
        if self.db.is_sqlite:
            return await self._run_leased(workspace_id, connection_id, work, probe)
        return await self._run_advisory(connection_id, work)

    async def _run_advisory(self, connection_id: str, work: Callable[[], Awaitable[T]]) -> T:
        wait_ms = int(self.lease.total_seconds() * 1000)
        try:
            async with self.db.system() as session:
                await session.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
                await session.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                                      {"ns": _PG_NAMESPACE, "key": _pg_key(connection_id)})
                return await work()  # the lock is released when this transaction ends
        except DBAPIError as exc:
            if "lock timeout" in str(exc.orig).lower():
                raise ServiceUnavailable("another process has been refreshing this connection for too long; "
                                         "retry shortly") from None
            raise

    async def _run_leased(self, workspace_id: str, connection_id: str, work: Callable[[], Awaitable[T]],
                          probe: Callable[[], Awaitable[T | None]]) -> T:
        me = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease.total_seconds() + 5
        delay = 0.01
        while not await self._acquire(workspace_id, connection_id, me):
            done = await probe()
            if done is not None:
                return done
            if loop.time() > deadline:
                raise ServiceUnavailable("another process has been refreshing this connection for too long; "
                                         "retry shortly")
            await asyncio.sleep(delay)  # waiting for another process: there is nothing to await on
            delay = min(delay * 2, 0.25)
        try:
            return await work()
        finally:
            await asyncio.shield(self._release(workspace_id, connection_id, me))

    async def _acquire(self, workspace_id: str, connection_id: str, me: str) -> bool:
        now = datetime.now(UTC)
        async with self.db.tenant(workspace_id) as session:
            held = (await session.execute(
                select(OAuthRefreshLease.holder, OAuthRefreshLease.expires_at)
                .where(OAuthRefreshLease.connection_id == connection_id)
            )).first()
            if held is not None and held.holder is not None and _aware(held.expires_at) > now:
                return False  # read-only check first: waiters do not take SQLite's write lock
        async with self.db.tenant(workspace_id) as session:
            if held is None:
                await session.execute(
                    sqlite_insert(OAuthRefreshLease)
                    .values(connection_id=connection_id, workspace_id=workspace_id)
                    .on_conflict_do_nothing(index_elements=["connection_id"])
                )
            result = cast(CursorResult[Any], await session.execute(
                update(OAuthRefreshLease)
                .where(OAuthRefreshLease.connection_id == connection_id,
                       OAuthRefreshLease.holder.is_(None) | (OAuthRefreshLease.expires_at < now))
                .values(holder=me, expires_at=now + self.lease)
                .execution_options(synchronize_session=False)
            ))
            return result.rowcount == 1

    async def _release(self, workspace_id: str, connection_id: str, me: str) -> None:
        async with self.db.tenant(workspace_id) as session:
            await session.execute(
                update(OAuthRefreshLease)
                .where(OAuthRefreshLease.connection_id == connection_id, OAuthRefreshLease.holder == me)
                .values(holder=None, expires_at=None).execution_options(synchronize_session=False)
            )


def _aware(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.min.replace(tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
