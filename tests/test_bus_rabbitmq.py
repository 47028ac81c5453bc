"""The bus over RabbitMQ: outbox -> relay -> topic exchange -> quorum queue -> idempotent consumer.

Each test uses its own exchange and queue names and deletes them afterwards. Broker outages are
made with a loopback TCP proxy in front of RabbitMQ that the test opens and closes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import Backoff, Event, EventBus, emit
from ionflux.core.db import Database
from ionflux.core.models import ProcessedEvent

from .polling import outbox_rows, until

pytestmark = pytest.mark.rabbitmq
TOPIC = "platform.test.events.orders.created"


async def all_published(db: Database) -> bool:
    """The relay marks rows after the broker confirms, which may be after a consumer already has them."""
    return {r.status for r in await outbox_rows(db)} == {"published"}


async def emit_one(db: Database, workspace_id: str, **data: Any) -> Event:
    async with db.tenant(workspace_id) as s:
        return emit(s, type=TOPIC, data=data)


class Names:
    def __init__(self) -> None:
        self.prefix = f"ionflux-test.{uuid.uuid4().hex[:10]}"
        self.exchange = f"{self.prefix}.events"
        self.dlx = f"{self.prefix}.dlx"
        self.dlq = f"{self.prefix}.dead-letter"
        self.queue_prefix = f"{self.prefix}.consumer."

    def options(self) -> dict[str, Any]:
        return {"exchange": self.exchange, "queue_prefix": self.queue_prefix,
                "dead_letter_exchange": self.dlx, "dead_letter_queue": self.dlq}


@pytest.fixture
async def make_bus(database: Database, amqp_url: str) -> AsyncIterator[Callable[..., EventBus]]:
    """Build RabbitMQ buses on isolated exchange/queue names; stop them and delete the names after."""
    names = Names()
    buses: list[EventBus] = []

    def make(url: str = amqp_url, **overrides: Any) -> EventBus:
        options: dict[str, Any] = {"relay_poll_seconds": 30, "max_deliveries": 3,
                                   "backoff": Backoff(0.05, 0.3), **names.options(), **overrides}
        bus = EventBus(database, bus_url=url, **options)
        buses.append(bus)
        return bus

    make.names = names  # type: ignore[attr-defined]
    yield make
    for bus in buses:
        await bus.stop()
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        queues = {names.dlq} | {names.queue_prefix + s.name for b in buses for s in b.subscriptions()}
        for queue in queues:
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in (names.exchange, names.dlx):
            await channel.exchange_delete(exchange)


class Recorder:
    """A consumer that counts how many times it acted on each event."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.order: list[Event] = []

    async def __call__(self, event: Event, session: AsyncSession) -> None:
        self.calls[event.id] += 1
        self.order.append(event)


async def test_end_to_end_through_rabbitmq(database: Database, make_bus: Callable[..., EventBus],
                                           amqp_url: str) -> None:
    bus = make_bus()
    names: Names = make_bus.names  # type: ignore[attr-defined]
    recorder = Recorder()
    bus.subscribe("e2e", ["platform.test.events.#"], recorder)
    bus.subscribe("unrelated", ["platform.other.events.*.*"], Recorder())
    await bus.start()

    # A raw queue on the same exchange shows what goes over the wire.
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        await until(lambda: bus.healthy())
        exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        tap = await channel.declare_queue("", exclusive=True)
        await tap.bind(exchange, routing_key="#")
        emitted = [await emit_one(database, ws, n=i) for i in range(10) for ws in ("ws-a", "ws-b")]
        await until(lambda: len(recorder.order) == len(emitted))
        raw = await tap.get(timeout=5)
        await raw.ack()
    assert raw.content_type == "application/json"
    assert raw.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert raw.routing_key == TOPIC
    envelope = json.loads(raw.body)
    assert raw.message_id == envelope["id"] == emitted[0].id
    assert envelope["specversion"] == "1.0" and envelope["type"] == TOPIC
    assert envelope["workspace_id"] == "ws-a" and envelope["data"] == {"n": 0}

    assert set(recorder.calls.values()) == {1}
    for ws in ("ws-a", "ws-b"):  # per-workspace order is kept
        assert [e.data["n"] for e in recorder.order if e.workspace_id == ws] == list(range(10))
    await until(lambda: all_published(database))
    assert bus.healthy()


class LoopbackProxy:
    """A TCP proxy to the broker that can be taken down (refusing connections, cutting open ones)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()
            self._writers.discard(dst)


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[LoopbackProxy]:
    parts = urlsplit(amqp_url)
    p = LoopbackProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    yield p
    await p.down()


async def test_events_wait_out_a_broker_outage_and_arrive_exactly_once(
    database: Database, make_bus: Callable[..., EventBus], amqp_url: str, proxy: LoopbackProxy
) -> None:
    parts = urlsplit(amqp_url)
    url = f"amqp://{parts.username}:{parts.password}@127.0.0.1:{proxy.port}/"
    bus = make_bus(url)
    first, second = Recorder(), Recorder()
    bus.subscribe("first", ["platform.test.#"], first)
    bus.subscribe("second", [TOPIC], second)
    await bus.start()  # the broker is unreachable: nothing fails, events wait in the outbox

    before = [await emit_one(database, "ws-1", n=i) for i in range(15)]

    async def attempted() -> bool:
        rows = await outbox_rows(database)
        return all(r.status == "pending" for r in rows) and rows[0].attempts >= 2

    await until(attempted)
    assert not bus.healthy()
    assert "connect" in (await outbox_rows(database))[0].last_error.lower()  # type: ignore[union-attr]

    await proxy.up()
    await until(lambda: len(first.calls) == 15 and len(second.calls) == 15, timeout=30)
    assert bus.healthy()

    # The broker goes away again mid-life (as in a restart): the robust connections come back.
    await proxy.down()
    await until(lambda: not bus.healthy())
    during = [await emit_one(database, "ws-1", n=100 + i) for i in range(5)]
    await proxy.up()
    await until(lambda: len(first.calls) == 20 and len(second.calls) == 20, timeout=30)

    ids = {e.id for e in before + during}
    for recorder in (first, second):
        assert set(recorder.calls) == ids and set(recorder.calls.values()) == {1}
    assert [e.data["n"] for e in first.order] == [e.data["n"] for e in before + during]
    await until(lambda: all_published(database))


async def test_the_same_message_delivered_twice_acts_once(
    database: Database, make_bus: Callable[..., EventBus], amqp_url: str
) -> None:
    bus = make_bus()
    names: Names = make_bus.names  # type: ignore[attr-defined]
    recorder = Recorder()
    bus.subscribe("dedupe", [TOPIC], recorder)
    await bus.start(relay=False)
    await until(lambda: "dedupe" in bus.transport.consuming)  # type: ignore[union-attr]
    event = Event(type=TOPIC, data={"order": 7}, workspace_id="ws-1")
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        exchange = await channel.get_exchange(names.exchange)
        queue = await channel.get_queue(names.queue_prefix + "dedupe")
        for _ in range(2):
            message = aio_pika.Message(event.to_json(), message_id=event.id, content_type="application/json")
            await exchange.publish(message, routing_key=TOPIC)

        async def settled() -> bool:
            declared = await channel.declare_queue(queue.name, passive=True)
            return declared.declaration_result.message_count == 0 and recorder.calls[event.id] == 1

        await until(settled)
    async with database.system() as s:
        assert await s.scalar(select(func.count()).select_from(ProcessedEvent)) == 1
    assert recorder.calls == {event.id: 1}


async def test_poison_message_lands_in_the_dead_letter_queue(
    database: Database, make_bus: Callable[..., EventBus], amqp_url: str
) -> None:
    bus = make_bus(max_deliveries=3)
    names: Names = make_bus.names  # type: ignore[attr-defined]
    calls: list[str] = []

    async def poison(event: Event, session: AsyncSession) -> None:
        calls.append(event.id)
        raise ValueError("cannot handle")

    healthy = Recorder()
    bus.subscribe("poisoned", [TOPIC], poison)
    bus.subscribe("healthy", [TOPIC], healthy)
    await bus.start()
    bad = await emit_one(database, "ws-1")

    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        await until(lambda: {"poisoned", "healthy"} <= bus.transport.consuming)  # type: ignore[union-attr]
        dlq = await channel.get_queue(names.dlq)
        dead: list[aio_pika.abc.AbstractIncomingMessage] = []

        def dead_letters(n: int) -> Callable[[], Any]:
            async def check() -> bool:
                message = await dlq.get(fail=False)
                if message is not None:
                    await message.ack()
                    dead.append(message)
                return len(dead) >= n
            return check

        await until(dead_letters(1))
        # A malformed message is dead-lettered at once (rejected without requeue).
        exchange = await channel.get_exchange(names.exchange)
        await exchange.publish(aio_pika.Message(b"not json", message_id="junk"), routing_key=TOPIC)
        await until(dead_letters(3))  # one copy per consumer queue
        await until(lambda: healthy.calls == {bad.id: 1})

    assert calls == [bad.id] * 3  # exactly bus_max_deliveries deliveries
    first = dead[0]
    assert json.loads(first.body)["id"] == bad.id and first.message_id == bad.id
    death = first.headers["x-death"][0]  # type: ignore[index]
    assert death["queue"] == names.queue_prefix + "poisoned"  # type: ignore[index]
    assert [m.message_id for m in dead[1:]] == ["junk", "junk"]
    assert healthy.calls == {bad.id: 1}  # the other consumer was not affected
    await until(lambda: all_published(database))  # the broker took it; the consumer dead-lettered it


async def test_database_trouble_is_retried_in_place_not_dead_lettered(
    database: Database, make_bus: Callable[..., EventBus], amqp_url: str
) -> None:
    bus = make_bus(max_deliveries=2)
    names: Names = make_bus.names  # type: ignore[attr-defined]
    failures = 4
    recorder = Recorder()

    async def unlucky(event: Event, session: AsyncSession) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("INSERT ...", {}, Exception("connection refused"))
        await recorder(event, session)

    bus.subscribe("unlucky", [TOPIC], unlucky)
    await bus.start()
    event = await emit_one(database, "ws-1")
    await until(lambda: recorder.calls == {event.id: 1})
    conn = await aio_pika.connect(amqp_url)
    async with conn:
        channel = await conn.channel()
        dlq = await channel.declare_queue(names.dlq, passive=True)
        assert dlq.declaration_result.message_count == 0
