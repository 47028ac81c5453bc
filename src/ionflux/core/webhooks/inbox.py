"""`WebhookInbox`: stores verified deliveries and their events in one transaction, with group commit.

Requests hand their records to `submit` and wait for the commit that holds them. A writer task takes
whatever has queued up while the previous commit ran (no timer: a lone request is written at once)
and writes it all in one transaction through the engine's `InboxStore` (one thread hand-off on
SQLite, one round trip on PostgreSQL). The request is acknowledged only after that commit. Events are
built by `outbox_row` (`emit`'s validation, CloudEvents envelope, id) and committed with the inbox
rows; a failed batch is retried record by record, so one bad record cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus.envelope import Event
from ionflux.core.bus.outbox import outbox_row
from ionflux.core.db import Database
from ionflux.core.models import new_id, utcnow
from ionflux.core.webhooks.models import DUPLICATE, RECEIVED, WebhookDelivery
from ionflux.core.webhooks.stores import InboxStore, PostgresInboxStore, SqliteInboxStore

log = logging.getLogger(__name__)
TABLE: Table = WebhookDelivery.__table__  # type: ignore[assignment]


@dataclass
class InboxRecord:
    workspace_id: str
    provider: str
    connection_id: str | None
    account: str | None
    delivery_id: str
    dedupe_key: str | None
    topic: str
    event_type: str
    subject: str | None
    headers: dict[str, str]
    body: bytes
    data: dict[str, Any]  # the event's data, without the inbox id (added at write time)
    replay_of: str | None = None
    id: str = field(default_factory=new_id)


@dataclass(frozen=True)
class Stored:
    id: str
    event_id: str | None  # None: a duplicate, not published again
    duplicate_of: str | None = None


@dataclass
class _Submission:
    records: list[InboxRecord]
    future: asyncio.Future[list[Stored]]


class WebhookInbox:
    def __init__(self, db: Database, *, store: InboxStore | None = None, wake: Callable[[], None] | None = None,
                 committed: Callable[[list[Event]], None] | None = None, wake_delay: float = 0.05,
                 max_batch: int = 256, writers: int | None = None,
                 retention: timedelta = timedelta(days=8), prune_every: float = 3600.0) -> None:
        self.db = db
        self.store = store or (SqliteInboxStore(db.url) if db.is_sqlite else PostgresInboxStore(db.url))
        self.wake = wake  # nudges the outbox relay after a commit (it also polls)
        self.committed = committed  # hands the committed events to a relay in this process
        # Wake-ups are coalesced: under load the relay then publishes many events per batch instead of
        # one transaction pair per webhook, for at most this much added publish latency.
        self.wake_delay = wake_delay
        self._wake_pending = False
        self.max_batch = max_batch
        # One writer batches the most: on PostgreSQL, 2 or 4 concurrent batch commits measured slower
        # (more, smaller fsyncs) with a worse tail; SQLite has a single writer anyway.
        self.writers = writers or 1
        self.retention = retention
        self.prune_every = prune_every
        self._queue: list[_Submission] = []
        self._active = 0
        self._next_prune = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, records: list[InboxRecord]) -> list[Stored]:
        """Store `records` (one delivery's parts) and their events; returns once committed."""
        future: asyncio.Future[list[Stored]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Submission(records, future))
        if self._active < self.writers:
            self._active += 1
            task = asyncio.create_task(self._drain(), name="ionflux-webhook-inbox")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch: list[_Submission] = []
                count = 0
                while self._queue and (not batch or count + len(self._queue[0].records) <= self.max_batch):
                    sub = self._queue.pop(0)
                    batch.append(sub)
                    count += len(sub.records)
                await self._write_batch(batch)
                await self._maybe_prune()
        finally:
            self._active -= 1

    async def _write_batch(self, batch: list[_Submission]) -> None:
        try:
            stored = await self._write([r for sub in batch for r in sub.records])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            for sub in batch:  # isolate the bad record: every other one still gets its commit
                try:
                    _settle(sub, await self._write(sub.records))
                except Exception as one:
                    _settle(sub, one)
            return
        results = iter(stored)
        for sub in batch:
            _settle(sub, [next(results) for _ in sub.records])

    async def _write(self, records: list[InboxRecord]) -> list[Stored]:
        first: dict[tuple[str, str], InboxRecord] = {}
        for rec in records:
            if rec.dedupe_key is not None:
                first.setdefault((rec.provider, rec.dedupe_key), rec)
        candidates = [r for r in records if r.dedupe_key is None or first[(r.provider, r.dedupe_key)] is r]
        made = self._events(candidates)
        events = [row for _, row in made]
        now = utcnow()
        rows = [_row(r, now, e["id"]) for r, e in zip(candidates, events, strict=True)]
        inserted = await self.store.write(rows, events)
        if inserted:
            if self.committed is not None:
                self.committed([event for rec, (event, _) in zip(candidates, made, strict=True) if rec.id in inserted])
            self._schedule_wake()
        event_ids = {row["id"]: row["event_id"] for row in rows}
        duplicates = [r for r in records if r.id not in inserted]
        originals: dict[tuple[str, str], str] = {}
        if duplicates:  # rare: the audit rows of duplicates go in a transaction of their own
            async with self.db.system() as session:
                lost = [r for r in candidates if r.id not in inserted]
                originals = await self._originals(session, lost, first, inserted)
                await session.execute(TABLE.insert().values([
                    {**_row(r, now, None), "dedupe_key": None, "status": DUPLICATE, "body": b"",
                     "duplicate_of": originals.get((r.provider, r.dedupe_key or ""))} for r in duplicates
                ]))
        return [Stored(r.id, event_ids[r.id]) if r.id in inserted
                else Stored(r.id, None, originals.get((r.provider, r.dedupe_key or ""))) for r in records]

    def _schedule_wake(self) -> None:
        if self.wake is None or self._wake_pending:
            return
        self._wake_pending = True
        asyncio.get_running_loop().call_later(self.wake_delay, self._fire_wake)

    def _fire_wake(self) -> None:
        self._wake_pending = False
        if self.wake is not None:
            self.wake()

    def _events(self, records: list[InboxRecord]) -> list[tuple[Event, dict[str, Any]]]:
        """Each record's event (validated and enveloped as `emit` does) and its outbox row for the store."""
        return [outbox_row(type=r.event_type, data={**r.data, "webhook_delivery_id": r.id}, subject=r.subject,
                           source=f"/webhooks/{r.provider}", workspace_id=r.workspace_id) for r in records]

    async def _originals(self, session: AsyncSession, lost: list[InboxRecord],
                         first: dict[tuple[str, str], InboxRecord], inserted: set[str]) -> dict[tuple[str, str], str]:
        found = {key: rec.id for key, rec in first.items() if rec.id in inserted}
        keys = [(r.provider, r.dedupe_key) for r in lost if r.dedupe_key is not None]
        if keys:
            rows = await session.execute(
                select(WebhookDelivery.provider, WebhookDelivery.dedupe_key, WebhookDelivery.id)
                .where(tuple_(WebhookDelivery.provider, WebhookDelivery.dedupe_key).in_(keys)))
            found.update({(p, k or ""): i for p, k, i in rows.all()})
        return found

    async def _maybe_prune(self) -> None:
        loop_now = asyncio.get_running_loop().time()
        if loop_now < self._next_prune:
            return
        self._next_prune = loop_now + self.prune_every
        try:
            await self.prune()
        except Exception:  # pruning is housekeeping; the next interval tries again
            log.exception("pruning the webhook inbox failed")

    async def prune(self) -> int:
        """Forget deliveries older than the retention window (their dedupe keys go with them)."""
        async with self.db.system() as session:
            result = await session.execute(
                delete(WebhookDelivery).where(WebhookDelivery.received_at < utcnow() - self.retention)
                .execution_options(synchronize_session=False))
        return int(getattr(result, "rowcount", 0) or 0)

    async def close(self) -> None:
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        await self.store.close()


def _row(rec: InboxRecord, now: datetime, event_id: str | None) -> dict[str, Any]:
    return {
        "id": rec.id, "workspace_id": rec.workspace_id, "provider": rec.provider,
        "connection_id": rec.connection_id, "account": rec.account, "delivery_id": rec.delivery_id,
        "dedupe_key": rec.dedupe_key, "topic": rec.topic, "event_type": rec.event_type, "event_id": event_id,
        "status": RECEIVED, "received_at": now, "headers": rec.headers, "body": rec.body, "error": None,
        "replay_of": rec.replay_of, "duplicate_of": None,
    }


def _settle(sub: _Submission, outcome: list[Stored] | BaseException) -> None:
    if sub.future.done():
        return
    if isinstance(outcome, BaseException):
        sub.future.set_exception(outcome)
    else:
        sub.future.set_result(outcome)
