"""`OutboxRelay`: moves committed outbox rows to a transport, oldest first, and never loses one.

PostgreSQL: each batch is claimed with `FOR UPDATE SKIP LOCKED` and published while the row locks are
held, so several relays share the outbox without publishing a row twice concurrently. SQLite has one
writer, so there the batch is read, published, then marked in a second short transaction (a read
snapshot held across the publish could not be upgraded to a write after consumers committed).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus.envelope import Event
from ionflux.core.bus.outbox import on_commit_wake
from ionflux.core.db import Database
from ionflux.core.models import OutboxEvent, utcnow
from ionflux.core.observability import Metrics, redact

log = logging.getLogger(__name__)
_MAX_ERROR = 1000
_MAX_KNOWN = 20_000  # events remembered from this process's commits (beyond that, read back as usual)
_EVENT = (OutboxEvent.id, OutboxEvent.type, OutboxEvent.source, OutboxEvent.subject, OutboxEvent.time,
          OutboxEvent.data, OutboxEvent.workspace_id)
Claimed = tuple[int, int, Event]  # seq, attempts so far, the event


@dataclass(frozen=True)
class PublishFailure:
    error: str
    unavailable: bool = False  # the transport itself is down: back off the whole relay, keep order
    dead_after: int | None = None  # this kind of failure dead-letters the row after this many attempts


PublishOutcome = PublishFailure | None  # None: published (and confirmed)


class Transport(Protocol):
    name: str

    async def publish(self, events: Sequence[Event]) -> list[PublishOutcome]:
        """One outcome per event, in order. May raise for the whole batch (treated as unavailable)."""
        ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with 'equal jitter': half the delay is fixed, half random."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        full = min(self.cap, self.base * 2.0 ** max(0, attempt - 1))
        return full / 2 + random.uniform(0, full / 2)  # noqa: S311 - jitter, not cryptography


def clean_error(text: str) -> str:
    return redact(text)[:_MAX_ERROR]


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        metrics: Metrics | None = None,
        batch_size: int = 50,
        poll_seconds: float = 1.0,
        max_attempts: int = 0,
        backoff: Backoff | None = None,
    ) -> None:
        self.db = db
        self.transport = transport
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._outages = 0  # consecutive batches the transport could not take
        self._next_due: float | None = None  # loop time of the earliest retry we scheduled
        self._lock = asyncio.Lock()
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._unregister_wake: Callable[[], None] | None = None
        self._known: dict[str, Event] = {}

    def remember(self, events: Sequence[Event]) -> None:
        """Events this process has just committed to the outbox: when their rows are claimed, the relay takes
        them from here instead of reading and decoding their columns again (the rows stay the record)."""
        if not self.running:
            return
        known = self._known
        known.update((e.id, e) for e in events)
        while len(known) > _MAX_KNOWN:  # claimed elsewhere (another relay) or not yet: forget the oldest
            del known[next(iter(known))]

    def wake(self) -> None:
        """Look at the outbox now instead of at the next poll."""
        if self._wake is not None:
            self._wake.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        unregisters = [on_commit_wake(engine, self.wake) for engine in self.db.engines]

        def unregister() -> None:
            for undo in unregisters:
                undo()

        self._unregister_wake = unregister
        self._task = asyncio.create_task(self._run(), name="ionflux-outbox-relay")

    async def stop(self, grace: float = 10.0) -> None:
        if self._unregister_wake is not None:
            self._unregister_wake()
            self._unregister_wake = None
        task, self._task = self._task, None
        self._known.clear()
        if task is None:
            return
        assert self._stopping is not None
        self._stopping.set()
        try:
            await asyncio.wait_for(task, grace)
        except TimeoutError:
            log.warning("outbox relay did not stop in %.0fs; cancelled", grace)

    async def run_once(self) -> int:
        """Publish one batch of due rows; returns how many rows it looked at."""
        async with self._lock:
            if self.db.is_sqlite:
                async with self.db.system() as session:
                    claimed = await self._claim(session, lock=False)
                if not claimed:
                    return 0
                outcomes = await self._publish([e for _, _, e in claimed])
                async with self.db.system() as session:
                    await self._record(session, claimed, outcomes)
                return len(claimed)
            # A mark lost in a crash means the batch is published again: consumers are idempotent.
            async with self.db.system(background=True) as session:
                claimed = await self._claim(session, lock=True)
                if not claimed:
                    return 0
                outcomes = await self._publish([e for _, _, e in claimed])
                await self._record(session, claimed, outcomes)
            return len(claimed)

    async def _claim(self, session: AsyncSession, *, lock: bool) -> list[Claimed]:
        """The next due rows, oldest first. Columns, not ORM objects; and the event's own columns (its data
        above all, a JSON document to decode) are read only for rows whose event this process does not know."""
        query = (
            select(OutboxEvent.seq, OutboxEvent.attempts, OutboxEvent.id)
            .where(OutboxEvent.status == "pending", OutboxEvent.next_attempt_at <= utcnow())
            .order_by(OutboxEvent.seq)
            .limit(self.batch_size)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        due: Sequence[Any] = (await session.execute(query)).all()
        known = self._known
        events = {row.id: event for row in due if (event := known.pop(row.id, None)) is not None}
        unknown = [row.seq for row in due if row.id not in events]
        if unknown:
            rows = await session.execute(select(*_EVENT).where(OutboxEvent.seq.in_(unknown)))
            events.update((row.id, Event.from_row(row)) for row in rows)
        # A row gone between the two reads (SQLite reads outside a transaction) is simply not claimed now.
        return [(row.seq, row.attempts, events[row.id]) for row in due if row.id in events]

    async def _publish(self, events: list[Event]) -> list[PublishOutcome]:
        try:
            outcomes = await self.transport.publish(events)
            if len(outcomes) != len(events):
                raise RuntimeError(f"transport returned {len(outcomes)} outcomes for {len(events)} events")
            return outcomes
        except Exception as exc:
            failure = PublishFailure(f"{type(exc).__name__}: {exc}", unavailable=True)
            return [failure] * len(events)

    async def _record(self, session: AsyncSession, claimed: list[Claimed], outcomes: list[PublishOutcome]) -> None:
        now = utcnow()
        loop_now = asyncio.get_running_loop().time()
        published = [seq for (seq, _, _), outcome in zip(claimed, outcomes, strict=True) if outcome is None]
        if published:
            await session.execute(
                update(OutboxEvent)
                .where(OutboxEvent.seq.in_(published), OutboxEvent.status == "pending")
                .values(status="published", published_at=now)
                .execution_options(synchronize_session=False)
            )
        unavailable = False
        for (seq, attempts, event), outcome in zip(claimed, outcomes, strict=True):
            if outcome is None:
                continue
            attempts += 1
            values: dict[str, object] = {"attempts": attempts, "last_error": clean_error(outcome.error)}
            limit = outcome.dead_after or self.max_attempts
            if limit and attempts >= limit:
                values["status"] = "dead"
                log.error("outbox event %s (%s) is dead after %d attempts: %s", event.id, event.type,
                          attempts, values["last_error"])
            elif outcome.unavailable:
                # Leave it due: the whole relay backs off, and order is kept when the transport returns.
                unavailable = True
            else:
                delay = self.backoff.delay(attempts)
                values["next_attempt_at"] = now + timedelta(seconds=delay)
                due = loop_now + delay
                self._next_due = due if self._next_due is None else min(self._next_due, due)
            await session.execute(
                update(OutboxEvent).where(OutboxEvent.seq == seq, OutboxEvent.status == "pending")
                .values(**values).execution_options(synchronize_session=False)
            )
        self._outages = self._outages + 1 if unavailable else 0
        if self.metrics is not None:
            if published:
                self.metrics.events_published.labels(transport=self.transport.name).inc(len(published))
            if len(published) < len(claimed):
                self.metrics.publish_failures.inc(len(claimed) - len(published))

    async def _run(self) -> None:
        assert self._wake is not None and self._stopping is not None
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            self._wake.clear()
            if self._next_due is not None and self._next_due <= loop.time():
                self._next_due = None
            try:
                seen = await self.run_once()
            except Exception as exc:  # the database is down: keep trying, nothing is lost
                log.warning("outbox relay batch failed: %s", clean_error(f"{type(exc).__name__}: {exc}"))
                self._outages += 1
                seen = 0
            if self._outages:
                delay = self.backoff.delay(self._outages)
                log.info("transport unavailable; retrying the outbox in %.1fs", delay)
                await _wait_any([self._stopping], delay)
                continue
            if seen >= self.batch_size:
                continue
            timeout = self.poll_seconds
            if self._next_due is not None:
                timeout = max(0.0, min(timeout, self._next_due - loop.time()))
            await _wait_any([self._wake, self._stopping], timeout)


async def _wait_any(events: list[asyncio.Event], seconds: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
