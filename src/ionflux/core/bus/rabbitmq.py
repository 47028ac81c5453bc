"""RabbitMQ transport (aio-pika): a durable topic exchange, one quorum queue per consumer name.

Publishing waits for the broker's confirm; a nack is a failure of that event, a lost connection or a
confirm timeout makes the relay back off and keep the rows pending. Consumers ack only after the
idempotent handler committed and nack with requeue on failure, so the quorum queue counts deliveries
and dead-letters to `ionflux.dlx` -> `ionflux.dead-letter` past the limit. Robust connections
re-declare the topology and resume consuming after a broker restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError

from ionflux.core.bus.consumers import KeyedSerializer, Subscription, deliver_retrying_transient
from ionflux.core.bus.envelope import CONTENT_TYPE, Event
from ionflux.core.bus.relay import Backoff, PublishFailure, PublishOutcome, clean_error
from ionflux.core.db import Database
from ionflux.core.observability import Metrics

log = logging.getLogger(__name__)


class TransportUnavailable(Exception):
    """The broker cannot take messages right now (not connected, or reconnecting)."""


class RabbitMQTransport:
    name = "rabbitmq"

    def __init__(
        self,
        url: str,
        db: Database,
        *,
        subscriptions: Callable[[], Sequence[Subscription]] = list,
        max_deliveries: int = 5,
        metrics: Metrics | None = None,
        exchange: str = "ionflux.events",
        queue_prefix: str = "ionflux.consumer.",
        dead_letter_exchange: str = "ionflux.dlx",
        dead_letter_queue: str = "ionflux.dead-letter",
        prefetch: int = 50,
        confirm_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        reconnect_interval: float = 1.0,
        backoff: Backoff | None = None,
        transient_retry_seconds: float = 300.0,
    ) -> None:
        """`transient_retry_seconds`: how long a delivery retries a database outage in place (holding
        the message) before it nacks and so spends one of the message's deliveries."""
        self.url = url
        self.db = db
        self.max_deliveries = max_deliveries
        self.metrics = metrics
        self.exchange_name = exchange
        self.queue_prefix = queue_prefix
        self.dlx_name = dead_letter_exchange
        self.dlq_name = dead_letter_queue
        self.prefetch = prefetch
        self.confirm_timeout = confirm_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.backoff = backoff or Backoff(0.5, 30.0)
        self.transient_retry_seconds = transient_retry_seconds
        self._pub_conn: AbstractRobustConnection | None = None
        self._pub_exchange: AbstractExchange | None = None
        self._pub_lock = asyncio.Lock()
        self._sub_conn: AbstractRobustConnection | None = None
        self._sub_lock = asyncio.Lock()
        self._consuming: dict[str, AbstractChannel] = {}
        self._consumer_task: asyncio.Task[None] | None = None
        self._publisher_task: asyncio.Task[None] | None = None
        self._subscriptions = subscriptions
        self._pub_channel: AbstractChannel | None = None
        self._pub_declared: set[str] = set()  # consumer queues the publisher made sure exist

    def queue_name(self, consumer: str) -> str:
        return f"{self.queue_prefix}{consumer}"

    @property
    def consuming(self) -> frozenset[str]:
        """Names of the subscriptions this process is consuming for (their queues exist)."""
        return frozenset(self._consuming)

    def healthy(self) -> bool:
        conns = [c for c in (self._pub_conn, self._sub_conn) if c is not None]
        return bool(conns) and all(not c.is_closed and c.connected.is_set() for c in conns)

    # -- publishing -------------------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> list[PublishOutcome]:
        exchange = await self._publisher()
        results = await asyncio.gather(*(self._publish_one(exchange, e) for e in events), return_exceptions=True)
        outcomes: list[PublishOutcome] = []
        for result in results:
            if not isinstance(result, BaseException):
                outcomes.append(None)
            elif isinstance(result, DeliveryError):
                outcomes.append(PublishFailure(f"broker refused the message (nack): {result}"))
            elif isinstance(result, Exception):
                outcomes.append(PublishFailure(f"{type(result).__name__}: {result}", unavailable=True))
            else:
                raise result
        return outcomes

    async def _publish_one(self, exchange: AbstractExchange, event: Event) -> None:
        message = aio_pika.Message(
            event.to_json(),
            message_id=event.id,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=event.type,
            timestamp=event.time,
            headers={"workspace_id": event.workspace_id},
        )
        await exchange.publish(message, routing_key=event.type, mandatory=False, timeout=self.confirm_timeout)

    async def _publisher(self) -> AbstractExchange:
        async with self._pub_lock:
            conn = self._pub_conn
            if conn is not None and not conn.is_closed:
                if not conn.connected.is_set() or self._pub_exchange is None or self._pub_channel is None:
                    raise TransportUnavailable("connection to the broker lost; reconnecting")
                exchange, channel = self._pub_exchange, self._pub_channel
            else:
                conn = await self._connect()
                try:
                    channel = await conn.channel(publisher_confirms=True)
                    exchange = await self._declare_topology(channel)
                except Exception:
                    await conn.close()
                    raise
                self._pub_conn, self._pub_channel, self._pub_exchange = conn, channel, exchange
                self._pub_declared.clear()
            # Declare the queues of this process's subscriptions before publishing, so events sent
            # before their consumers first connect are queued, not dropped as unroutable.
            for sub in self._subscriptions():
                if sub.name not in self._pub_declared:
                    await self._declare_queue(channel, exchange, sub)
                    self._pub_declared.add(sub.name)
            return exchange

    async def _connect(self) -> AbstractRobustConnection:
        try:
            return await aio_pika.connect_robust(
                self.url, timeout=self.connect_timeout, reconnect_interval=self.reconnect_interval
            )
        except Exception as exc:
            raise TransportUnavailable(f"cannot connect to the broker: {type(exc).__name__}: {exc}") from None

    async def _declare_topology(self, channel: AbstractChannel) -> AbstractExchange:
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        dlx = await channel.declare_exchange(self.dlx_name, aio_pika.ExchangeType.FANOUT, durable=True)
        dlq = await channel.declare_queue(self.dlq_name, durable=True, arguments={"x-queue-type": "quorum"})
        await dlq.bind(dlx, routing_key="#")
        return exchange

    def start_publisher(self) -> None:
        """Connect the publisher in the background now (with backoff), so health shows the broker."""
        if self._publisher_task is None or self._publisher_task.done():
            self._publisher_task = asyncio.create_task(self._connect_publisher(), name="ionflux-bus-publisher")

    async def _connect_publisher(self) -> None:
        attempt = 0
        while True:
            try:
                await self._publisher()
                return
            except Exception as exc:
                attempt += 1
                delay = self.backoff.delay(attempt)
                log.warning("bus publisher: %s; retrying in %.1fs", clean_error(str(exc)), delay)
                await asyncio.sleep(delay)

    # -- consuming --------------------------------------------------------------------------------

    def start_consumers(self) -> None:
        """Connect in the background (with backoff until the broker is reachable) and consume."""
        if self._consumer_task is None or self._consumer_task.done():
            self._consumer_task = asyncio.create_task(self._consume_all(), name="ionflux-bus-consumers")

    async def add_consumer(self, sub: Subscription) -> None:
        """Start consuming for a subscription registered after the consumers started."""
        if self._sub_conn is not None and not self._sub_conn.is_closed:
            await self._consume(self._sub_conn, sub)

    async def _consume_all(self) -> None:
        attempt = 0
        while True:
            try:
                conn = await self._connect()
            except TransportUnavailable as exc:
                attempt += 1
                delay = self.backoff.delay(attempt)
                log.warning("bus consumers: %s; retrying in %.1fs", clean_error(str(exc)), delay)
                await asyncio.sleep(delay)
                continue
            try:
                self._sub_conn = conn
                for sub in list(self._subscriptions()):
                    await self._consume(conn, sub)
                return
            except Exception as exc:
                attempt += 1
                log.warning("bus consumers: set-up failed (%s); retrying", clean_error(repr(exc)))
                self._sub_conn = None
                self._consuming.clear()
                await conn.close()
                await asyncio.sleep(self.backoff.delay(attempt))

    async def _consume(self, conn: AbstractRobustConnection, sub: Subscription) -> None:
        async with self._sub_lock:
            if sub.name in self._consuming:
                return
            channel = await conn.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            exchange = await self._declare_topology(channel)
            queue = await self._declare_queue(channel, exchange, sub)
            await queue.consume(self._handler_for(sub))
            self._consuming[sub.name] = channel

    async def _declare_queue(
        self, channel: AbstractChannel, exchange: AbstractExchange, sub: Subscription
    ) -> AbstractQueue:
        queue = await channel.declare_queue(
            self.queue_name(sub.name),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.delivery_limit,
                "x-dead-letter-exchange": self.dlx_name,
            },
        )
        for pattern in sub.patterns:
            await queue.bind(exchange, routing_key=pattern.pattern)
        return queue

    @property
    def delivery_limit(self) -> int:
        # A quorum queue delivers a message limit + 1 times before dead-lettering it (measured on
        # RabbitMQ 3.10: the limit counts returns), so N - 1 gives exactly N deliveries.
        return max(0, self.max_deliveries - 1)

    def _handler_for(self, sub: Subscription) -> Callable[[AbstractIncomingMessage], Any]:
        serializer = KeyedSerializer()

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                event = Event.from_json(message.body)
            except ValueError as exc:
                log.error("consumer %s: malformed message %s dead-lettered: %s", sub.name, message.message_id, exc)
                await _settle(message.reject(requeue=False))
                return

            async def job() -> None:
                try:
                    await deliver_retrying_transient(
                        self.db, sub, event, self.metrics,
                        backoff=self.backoff.delay, budget_seconds=self.transient_retry_seconds,
                    )
                except Exception:
                    deliveries = _delivery_count(message)
                    log.warning("consumer %s failed on event %s (%s), delivery %d", sub.name, event.id,
                                event.type, deliveries + 1, exc_info=True)
                    # A short pause keeps a failing handler from spinning through its deliveries.
                    await asyncio.sleep(min(1.0, 0.05 * 2**deliveries))
                    await _settle(message.nack(requeue=True))
                    return
                await _settle(message.ack())

            # SQLite has one writer: concurrent handler transactions would only wait in its busy handler.
            await serializer.run("" if self.db.is_sqlite else event.workspace_id, job)

        return on_message

    async def close(self) -> None:
        tasks = [t for t in (self._consumer_task, self._publisher_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._consumer_task = self._publisher_task = None
        for conn in (self._sub_conn, self._pub_conn):
            if conn is not None and not conn.is_closed:
                await conn.close()
        self._sub_conn = self._pub_conn = None
        self._pub_exchange = self._pub_channel = None
        self._consuming.clear()


def _delivery_count(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0


async def _settle(settle: Any) -> None:
    # The channel may be gone (broker restart): the broker then redelivers, and idempotency absorbs it.
    try:
        await settle
    except Exception as exc:
        log.warning("could not ack/nack a message: %s", clean_error(repr(exc)))
