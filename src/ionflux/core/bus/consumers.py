"""Subscriptions and the idempotent consumer wrapper shared by both transports.

Delivery is at-least-once; a consumer acts once per event id because its handler runs in the same
tenant transaction that inserts the `ProcessedEvent(consumer, event_id)` marker: the insert comes
first, so a concurrent duplicate waits on the primary key and then finds the marker.

A handler's effects are the writes it makes in the session it is given (work for later, such as an
agent run, is enqueued as rows): `deliver_many` relies on that to run several events of one workspace
in one transaction and, if any of them fails, to roll them all back and run them one by one. There a
consumer may take its events at once (`Subscription.batch`), e.g. to write them with one statement.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Insert, Table, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus.envelope import Event
from ionflux.core.bus.patterns import TopicPattern, compile_pattern
from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest
from ionflux.core.models import ProcessedEvent, utcnow
from ionflux.core.observability import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[Event, AsyncSession], Awaitable[None]]
# Several events at once, in outbox order, with the same effect as `Handler` on each in turn.
BatchHandler = Callable[[list[Event], AsyncSession], Awaitable[None]]
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Subscription:
    """A named consumer: its queue is `ionflux.consumer.<name>`; its marker rows carry the name."""

    name: str
    patterns: tuple[TopicPattern, ...]
    handler: Handler
    batch: BatchHandler | None = None  # used by `deliver_many`; `handler` is used for one event

    @classmethod
    def create(cls, name: str, patterns: list[str], handler: Handler,
               batch: BatchHandler | None = None) -> Subscription:
        if not _NAME.match(name):
            raise InvalidRequest(
                f"consumer name {name!r} must be 1-100 of a-z, 0-9, '_', '.', '-' (it names a queue)",
                field="name",
            )
        if not patterns:
            raise InvalidRequest("a subscription needs at least one topic pattern", field="patterns")
        return cls(name, tuple(compile_pattern(p) for p in patterns), handler, batch)

    def matches(self, topic: str) -> bool:
        return any(p.matches(topic) for p in self.patterns)


class _AlreadyProcessed(Exception):
    pass


async def deliver_once(db: Database, sub: Subscription, event: Event, metrics: Metrics | None = None, *,
                       outbox_backed: bool = False) -> bool:
    """Run `sub`'s handler for `event` unless it already ran. True if it ran now; raises if it failed.

    `outbox_backed`: the event's outbox row stays pending until this commit is followed by the relay's
    mark, so the commit need not wait for its flush (`Database.tenant(background=True)`). Not for a
    broker delivery, which is acknowledged (and gone) after the commit.
    """
    try:
        async with db.tenant(event.workspace_id, background=outbox_backed) as session:
            try:  # a Core insert: the unit of work costs more than the handler in small transactions
                await session.execute(
                    insert(ProcessedEvent).values(
                        consumer=sub.name, event_id=event.id, workspace_id=event.workspace_id,
                        processed_at=utcnow(),
                    )
                )
            except IntegrityError:
                raise _AlreadyProcessed from None
            await sub.handler(event, session)
    except _AlreadyProcessed:
        _count(metrics, sub.name, "duplicate")
        return False
    except Exception:
        _count(metrics, sub.name, "failed")
        raise
    _count(metrics, sub.name, "handled")
    return True


async def deliver_many(db: Database, deliveries: list[tuple[Subscription, Event]],
                       metrics: Metrics | None = None) -> list[Exception | None]:
    """`deliver_once` for several (consumer, outbox event) pairs of one workspace, in one transaction.

    One multi-row marker insert (skipping pairs already processed) and one commit instead of one
    transaction per pair. Each consumer gets its events in the order given (consumers one after the
    other, in the order they first appear), all at once if it has a `batch` handler. If anything fails,
    the whole transaction is rolled back and each pair is delivered alone, so one bad event fails only
    its own delivery. Returns each pair's failure (None: done). For the embedded transport: the commits
    are `outbox_backed` (see `deliver_once`).
    """
    if len(deliveries) < 2:
        return [await _outcome(deliver_once(db, sub, e, metrics, outbox_backed=True)) for sub, e in deliveries]
    workspace = deliveries[0][1].workspace_id
    if any(e.workspace_id != workspace for _, e in deliveries):
        raise ValueError("deliver_many takes the events of one workspace")
    now = utcnow()
    markers = _markers("sqlite" if db.is_sqlite else "postgresql")
    rows = [{"consumer": sub.name, "event_id": e.id, "workspace_id": workspace, "processed_at": now}
            for sub, e in deliveries]
    runs: dict[str, tuple[Subscription, list[int]]] = {}  # consumer -> the pairs it acts on now
    failing: int | None = None  # the pair whose handler raised
    try:
        async with db.tenant(workspace, background=True) as session:
            fresh = {(c, i) for c, i in (await session.execute(markers, rows)).all()}
            for n, (sub, event) in enumerate(deliveries):
                if (sub.name, event.id) in fresh:
                    fresh.discard((sub.name, event.id))  # the same delivery twice in a batch acts once
                    runs.setdefault(sub.name, (sub, []))[1].append(n)
            for sub, pairs in runs.values():
                if sub.batch is not None:
                    await sub.batch([deliveries[n][1] for n in pairs], session)
                else:
                    for n in pairs:
                        failing = n
                        await sub.handler(deliveries[n][1], session)
                        failing = None
                        # Let waiting requests run between handlers: a batch is background work sharing the loop.
                        await asyncio.sleep(0)
                await asyncio.sleep(0)
    except Exception as exc:
        # A handler that raised has had this attempt (it is not run again now: the relay retries it
        # with backoff); everything else in the batch is delivered alone (after a failed batch
        # handler, all of its pairs: which one failed is not known).
        if failing is not None:
            _count(metrics, deliveries[failing][0].name, "failed")
        log.info("a batch of %d deliveries failed; delivering them one by one", len(deliveries))
        return [exc if n == failing else await _outcome(deliver_once(db, sub, e, metrics, outbox_backed=True))
                for n, (sub, e) in enumerate(deliveries)]
    acted = {name: len(pairs) for name, (_, pairs) in runs.items()}
    for name, count in collections.Counter(sub.name for sub, _ in deliveries).items():
        _count(metrics, name, "handled", acted.get(name, 0))
        _count(metrics, name, "duplicate", count - acted.get(name, 0))
    return [None] * len(deliveries)


@functools.cache
def _markers(dialect: str) -> Insert:
    """The multi-row marker insert, on the table (Core): the ORM's bulk-insert path costs ~30 µs a row more."""
    table: Table = ProcessedEvent.__table__  # type: ignore[assignment]
    insert = (sqlite if dialect == "sqlite" else postgresql).insert(table)
    return insert.on_conflict_do_nothing().returning(table.c.consumer, table.c.event_id)  # type: ignore[no-any-return]


async def _outcome(delivery: Awaitable[bool]) -> Exception | None:
    try:
        await delivery
    except Exception as exc:
        return exc
    return None


def is_transient(exc: BaseException) -> bool:
    """The database (not the handler's logic) failed: unreachable, connection lost, or locked.

    Such failures are retried without spending the event's deliveries, so an outage of the database
    never dead-letters healthy events.
    """
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    return isinstance(exc, ConnectionError | TimeoutError | DisconnectionError)


async def deliver_retrying_transient(
    db: Database, sub: Subscription, event: Event, metrics: Metrics | None, *,
    backoff: Callable[[int], float], budget_seconds: float,
) -> bool:
    """`deliver_once`, retrying transient database failures in place for up to `budget_seconds`."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + budget_seconds
    attempt = 0
    while True:
        try:
            return await deliver_once(db, sub, event, metrics)
        except Exception as exc:
            if not is_transient(exc) or loop.time() >= give_up:
                raise
            attempt += 1
            delay = backoff(attempt)
            log.warning("consumer %s: database unavailable (%s); retrying event %s in %.1fs",
                        sub.name, type(exc).__name__, event.id, delay)
            await asyncio.sleep(delay)


def _count(metrics: Metrics | None, consumer: str, outcome: str, times: int = 1) -> None:
    if metrics is not None and times:
        metrics.events_consumed.labels(consumer=consumer, outcome=outcome).inc(times)


async def purge_processed(db: Database, retention_days: int) -> int:
    """Forget markers older than the retention (a redelivery that late would act again)."""
    cutoff = utcnow() - timedelta(days=retention_days)
    async with db.system() as session:
        result = await session.execute(
            delete(ProcessedEvent).where(ProcessedEvent.processed_at < cutoff)
            .execution_options(synchronize_session=False)
        )
    return int(getattr(result, "rowcount", 0) or 0)


class KeyedSerializer:
    """Runs jobs with the same key one at a time, in the order they were submitted.

    Deliveries arrive as concurrent tasks; serialising per workspace keeps each workspace's events in
    order while different workspaces proceed in parallel.
    """

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    async def run(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            await job()
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]
