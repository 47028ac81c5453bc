"""`EventBus`: the one object services use to subscribe, and the process uses to run the relay and consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ionflux.core.bus.consumers import BatchHandler, Handler, Subscription, purge_processed
from ionflux.core.bus.embedded import EmbeddedTransport
from ionflux.core.bus.envelope import Event
from ionflux.core.bus.notify import OutboxListener, OutboxNotifier
from ionflux.core.bus.outbox import on_commit_wake
from ionflux.core.bus.rabbitmq import RabbitMQTransport
from ionflux.core.bus.relay import Backoff, OutboxRelay
from ionflux.core.db import Database
from ionflux.core.errors import Conflict
from ionflux.core.observability import Metrics
from ionflux.core.settings import Settings

log = logging.getLogger(__name__)
PURGE_EVERY_SECONDS = 3600.0


class EventBus:
    def __init__(
        self,
        db: Database,
        *,
        bus_url: str = "embedded://",
        metrics: Metrics | None = None,
        max_deliveries: int = 5,
        outbox_max_attempts: int = 0,
        relay_poll_seconds: float = 1.0,
        relay_batch_size: int = 50,
        consumer_batch: int = 0,
        processed_retention_days: int = 14,
        backoff: Backoff | None = None,
        **rabbitmq_options: Any,
    ) -> None:
        """`rabbitmq_options` go to `RabbitMQTransport` (e.g. exchange=, queue_prefix= for isolation)."""
        self.db = db
        self.metrics = metrics
        self.processed_retention_days = processed_retention_days
        self._subscriptions: dict[str, Subscription] = {}
        self.transport: EmbeddedTransport | RabbitMQTransport
        if bus_url.startswith("embedded://"):
            self.transport = EmbeddedTransport(
                db, self.subscriptions, max_deliveries=max_deliveries, metrics=metrics, chunk=consumer_batch
            )
        else:
            self.transport = RabbitMQTransport(
                bus_url, db, subscriptions=self.subscriptions, max_deliveries=max_deliveries, metrics=metrics,
                **rabbitmq_options,
            )
        self.relay = OutboxRelay(
            db, self.transport, metrics=metrics, batch_size=relay_batch_size,
            poll_seconds=relay_poll_seconds, max_attempts=outbox_max_attempts, backoff=backoff,
        )
        self._consumers_running = False
        self._uses_broker = False  # this process relays or consumes over RabbitMQ
        self._purge_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # PostgreSQL: a relay in another process is woken by NOTIFY (see `notify.py`).
        self._listener: OutboxListener | None = None
        self._notifier: OutboxNotifier | None = None
        self._unregister_wakes: list[Callable[[], None]] = []
        self._forward: Callable[[], None] | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, db: Database, metrics: Metrics | None = None, **options: Any
    ) -> EventBus:
        return cls(
            db,
            bus_url=settings.bus_url,
            metrics=metrics,
            max_deliveries=settings.bus_max_deliveries,
            outbox_max_attempts=settings.outbox_max_attempts,
            relay_poll_seconds=settings.relay_poll_seconds,
            relay_batch_size=settings.relay_batch_size,
            consumer_batch=settings.bus_consumer_batch,
            processed_retention_days=settings.processed_retention_days,
            **options,
        )

    @property
    def is_embedded(self) -> bool:
        return isinstance(self.transport, EmbeddedTransport)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subscriptions.values())

    def subscribe(self, name: str, patterns: list[str], handler: Handler, *,
                  batch: BatchHandler | None = None) -> Subscription:
        """Register consumer `name` for topics matching `patterns`; it acts once per event id. `batch`: the same
        handler for several events at once (the embedded transport hands a consumer a workspace's events in chunks)."""
        if name in self._subscriptions:
            raise Conflict(f"a consumer named {name!r} is already subscribed", field="name")
        sub = Subscription.create(name, patterns, handler, batch)
        self._subscriptions[name] = sub
        if self._consumers_running and isinstance(self.transport, RabbitMQTransport):
            task = asyncio.create_task(self.transport.add_consumer(sub))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return sub

    async def start(self, *, relay: bool = True, consumers: bool = True) -> None:
        """Run the outbox relay and/or this process's consumers.

        Embedded delivery happens inside the relay, so an embedded bus without consumers does not
        relay either: its events wait in the outbox for a process that runs both.
        """
        if consumers:
            self._consumers_running = True
            if isinstance(self.transport, RabbitMQTransport):
                self.transport.start_consumers()
            self._purge_task = asyncio.create_task(self._purge_forever(), name="ionflux-processed-purge")
        if relay and (consumers or not self.is_embedded):
            self.relay.start()
            if isinstance(self.transport, RabbitMQTransport):
                self.transport.start_publisher()
        elif relay:
            log.warning("embedded bus started without consumers: the outbox relay is not started")
        self._uses_broker = not self.is_embedded and (relay or consumers)
        if self.relay.running:
            if not self.db.is_sqlite:  # woken by the commits of other processes too
                self._listener = OutboxListener(self.db.url, self.relay.wake)
                self._listener.start()
            return
        # The relay is elsewhere: tell it about this process's commits, by NOTIFY (PostgreSQL) or through
        # the way `forward_wakes` gave (SQLite has no NOTIFY).
        if not self.db.is_sqlite:
            self._notifier = OutboxNotifier(self.db.url)
        if self._notifier is not None or self._forward is not None:
            self._unregister_wakes = [on_commit_wake(engine, self.wake) for engine in self.db.engines]

    async def stop(self) -> None:
        for unregister in self._unregister_wakes:
            unregister()
        self._unregister_wakes = []
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
        if self._notifier is not None:
            await self._notifier.close()
            self._notifier = None
        await self.relay.stop()
        self._consumers_running = False
        tasks = [t for t in (self._purge_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._purge_task = None
        self._uses_broker = False
        if isinstance(self.transport, RabbitMQTransport):
            await self.transport.close()

    def healthy(self) -> bool:
        """For /healthz: embedded is always up; a process that relays or consumes over RabbitMQ needs its
        broker connection(s) open (one that does neither, e.g. an API-only process, does not)."""
        if isinstance(self.transport, EmbeddedTransport) or not self._uses_broker:
            return True
        return self.transport.healthy()

    def forward_wakes(self, wake: Callable[[], None]) -> None:
        """This process does not relay (SQLite: `ionflux serve`'s worker child does): after its commits, call
        `wake` to tell the relay. (On PostgreSQL, the commits of any process reach it by NOTIFY.)"""
        self._forward = wake

    def committed(self, events: Sequence[Event]) -> None:
        """These events' outbox rows were just committed by machinery that wrote them itself (the webhook inbox):
        a relay running in this process takes them as they are instead of decoding their rows again."""
        self.relay.remember(events)

    def wake(self) -> None:
        """Outbox rows were committed: wake the relay, here or in another process."""
        if self.relay.running:
            self.relay.wake()
        elif self._notifier is not None:
            self._notifier.notify()
        elif self._forward is not None:
            self._forward()

    async def purge_processed(self) -> int:
        return await purge_processed(self.db, self.processed_retention_days)

    async def _purge_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                removed = await self.purge_processed()
                if removed:
                    log.info("forgot %d processed-event markers past retention", removed)
            await asyncio.sleep(PURGE_EVERY_SECONDS)
