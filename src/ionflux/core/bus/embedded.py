"""`embedded://`: publishing an event means handing it to the matching in-process consumers.

A relay batch is split into workspaces; a workspace's events go to their consumers in chunks, each
chunk in one transaction (`deliver_many`): each consumer sees its events in outbox order (a consumer
with a batch handler gets a chunk's events at once), the consumers one after the other.

A consumer that raises makes the publish of that event fail, so the relay retries it with backoff;
consumers that already succeeded skip it by idempotency. After `max_deliveries` failures the outbox
row is marked `dead` with the consumer named in `last_error`: the embedded dead-letter. Failures of
the database itself (see `consumers.is_transient`) are retried without counting toward that limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence

from ionflux.core.bus.consumers import Subscription, deliver_many, is_transient
from ionflux.core.bus.envelope import Event
from ionflux.core.bus.relay import PublishFailure, PublishOutcome
from ionflux.core.db import Database
from ionflux.core.observability import Metrics

log = logging.getLogger(__name__)


class EmbeddedTransport:
    name = "embedded"

    def __init__(
        self,
        db: Database,
        subscriptions: Callable[[], Sequence[Subscription]],
        *,
        max_deliveries: int = 5,
        metrics: Metrics | None = None,
        concurrency: int = 8,
        chunk: int = 0,
    ) -> None:
        self.db = db
        self.subscriptions = subscriptions
        self.max_deliveries = max_deliveries
        self.metrics = metrics
        self.concurrency = concurrency  # workspaces dispatched at once (keep under the DB pool size)
        # Events per consumers' transaction: fewer commits, but each transaction's flush is one stretch of
        # CPU on the event loop (and, on SQLite, the write lock is held from its first statement), so it
        # stays short enough not to stall the requests (and the webhook inbox) sharing the process.
        # 0: by database — 50 on SQLite, where each transaction costs thread hand-offs; 16 on PostgreSQL,
        # where a shorter stretch measured a better tail.
        self.chunk = chunk or (50 if db.is_sqlite else 16)

    async def publish(self, events: Sequence[Event]) -> list[PublishOutcome]:
        # Each workspace's events reach each consumer in outbox order. On PostgreSQL, workspaces are
        # dispatched concurrently (their commits overlap); SQLite has one writer, so one at a time.
        failures: list[list[tuple[str, Exception]]] = [[] for _ in events]
        lanes: dict[str, list[int]] = defaultdict(list)
        for i, event in enumerate(events):
            lanes[event.workspace_id].append(i)
        subscriptions = list(self.subscriptions())
        matching: dict[str, list[Subscription]] = {}  # by event type: a batch has few distinct types

        def consumers_of(topic: str) -> list[Subscription]:
            found = matching.get(topic)
            if found is None:
                found = matching[topic] = [sub for sub in subscriptions if sub.matches(topic)]
            return found

        async def run_lane(indexes: list[int]) -> None:
            for start in range(0, len(indexes), self.chunk):
                pairs = [(sub, i) for i in indexes[start:start + self.chunk] for sub in consumers_of(events[i].type)]
                outcomes = await deliver_many(self.db, [(sub, events[i]) for sub, i in pairs], self.metrics)
                for (sub, i), outcome in zip(pairs, outcomes, strict=True):
                    if outcome is not None:
                        log.warning("consumer %s failed on event %s (%s)", sub.name, events[i].id, events[i].type,
                                    exc_info=outcome)
                        failures[i].append((sub.name, outcome))

        if self.db.is_sqlite:
            for indexes in lanes.values():
                await run_lane(indexes)
        else:
            gate = asyncio.Semaphore(self.concurrency)

            async def gated(indexes: list[int]) -> None:
                async with gate:
                    await run_lane(indexes)

            await asyncio.gather(*(gated(indexes) for indexes in lanes.values()))
        return [self._outcome(f) for f in failures]

    def _outcome(self, failures: list[tuple[str, Exception]]) -> PublishOutcome:
        if not failures:
            return None
        # Database trouble (not the consumer's logic) is retried with backoff without spending one of
        # the event's deliveries, so an outage never dead-letters healthy events.
        transient = any(is_transient(exc) for _, exc in failures)
        return PublishFailure("; ".join(f"consumer {name}: {type(exc).__name__}: {exc}" for name, exc in failures),
                              dead_after=None if transient else self.max_deliveries)
