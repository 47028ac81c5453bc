"""`embedded://`: publishing an event means handing it to the matching in-process consumers.

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

from ionflux.core.bus.consumers import Subscription, deliver_once, is_transient
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
    ) -> None:
        self.db = db
        self.subscriptions = subscriptions
        self.max_deliveries = max_deliveries
        self.metrics = metrics
        self.concurrency = concurrency  # workspaces dispatched at once (keep under the DB pool size)

    async def publish(self, events: Sequence[Event]) -> list[PublishOutcome]:
        # Each workspace's events reach each consumer in outbox order. On PostgreSQL, workspaces are
        # dispatched concurrently (their commits overlap); SQLite has one writer, so one at a time.
        outcomes: list[PublishOutcome] = [None] * len(events)
        if self.db.is_sqlite:
            for i, event in enumerate(events):
                outcomes[i] = await self._dispatch(event)
            return outcomes
        lanes: dict[str, list[int]] = defaultdict(list)
        for i, event in enumerate(events):
            lanes[event.workspace_id].append(i)
        gate = asyncio.Semaphore(self.concurrency)

        async def run_lane(indexes: list[int]) -> None:
            async with gate:
                for i in indexes:
                    outcomes[i] = await self._dispatch(events[i])

        await asyncio.gather(*(run_lane(indexes) for indexes in lanes.values()))
        return outcomes

    async def _dispatch(self, event: Event) -> PublishOutcome:
        failures: list[str] = []
        transient = False
        for sub in self.subscriptions():
            if not sub.matches(event.type):
                continue
            try:
                await deliver_once(self.db, sub, event, self.metrics)
            except Exception as exc:
                log.warning("consumer %s failed on event %s (%s)", sub.name, event.id, event.type,
                            exc_info=True)
                failures.append(f"consumer {sub.name}: {type(exc).__name__}: {exc}")
                transient = transient or is_transient(exc)
        if not failures:
            return None
        # Database trouble (not the consumer's logic) is retried with backoff without spending one of
        # the event's deliveries, so an outage never dead-letters healthy events.
        return PublishFailure("; ".join(failures), dead_after=None if transient else self.max_deliveries)
