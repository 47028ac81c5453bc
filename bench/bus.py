"""Events/s through outbox -> relay -> consumer, against a bare aio-pika loop measured in the same run.

    .venv/bin/python bench/bus.py                      # 2,000 events, SQLite, embedded + RabbitMQ
    .venv/bin/python bench/bus.py --events 10000 --per-tx 10 --database-url postgresql+asyncpg://...

Rows:
  bare aio-pika   publish with confirms (batches as the relay sends them) + consume/ack, no database
  embedded        emit (--producers tasks, --per-tx events per transaction) -> relay -> in-process consumer
  rabbitmq        emit -> relay -> exchange -> quorum queue -> idempotent consumer
The ratio is each row's events/s over the bare aio-pika loop's (1.00 = no overhead beyond the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import Event, EventBus, emit
from ionflux.core.db import Database

TOPIC = "platform.bench.events.orders.created"


@dataclass
class Result:
    name: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=1):
            return True
    except OSError:
        return False


async def bare_aio_pika(url: str, n: int, batch: int, prefetch: int) -> Result:
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    conn = await aio_pika.connect_robust(url)
    async with conn:
        pub = await conn.channel(publisher_confirms=True)
        sub = await conn.channel()
        await sub.set_qos(prefetch_count=prefetch)
        exchange = await pub.declare_exchange(f"{prefix}.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await sub.declare_queue(f"{prefix}.q", durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange.name, routing_key="#")
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == n:
                done.set()

        await queue.consume(on_message)
        events = [Event(type=TOPIC, data={"n": i}, workspace_id="ws-bench") for i in range(n)]
        start = time.perf_counter()
        for i in range(0, n, batch):
            await asyncio.gather(*(
                exchange.publish(
                    aio_pika.Message(e.to_json(), message_id=e.id, content_type="application/json",
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=TOPIC, mandatory=False,
                )
                for e in events[i : i + batch]
            ))
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.perf_counter() - start
        await sub.queue_delete(queue.name, if_unused=False, if_empty=False)
        await pub.exchange_delete(exchange.name)
    return Result("bare aio-pika (confirms)", n, elapsed)


async def through_bus(
    name: str, db: Database, bus_url: str, n: int, per_tx: int, batch: int, producers: int
) -> Result:
    prefix = f"bench.{uuid.uuid4().hex[:8]}"
    options = {} if bus_url.startswith("embedded") else {
        "exchange": f"{prefix}.events", "queue_prefix": f"{prefix}.consumer.",
        "dead_letter_exchange": f"{prefix}.dlx", "dead_letter_queue": f"{prefix}.dead-letter",
    }
    bus = EventBus(db, bus_url=bus_url, relay_batch_size=batch, relay_poll_seconds=1.0, **options)
    done = asyncio.Event()
    seen = 0

    async def consume(event: Event, session: AsyncSession) -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            done.set()

    bus.subscribe("bench", [TOPIC], consume)
    await bus.start()
    try:
        if not bus.is_embedded:  # connect before the clock starts, as a running service would be
            deadline = time.perf_counter() + 30
            while "bench" not in bus.transport.consuming or not bus.healthy():  # type: ignore[union-attr]
                if time.perf_counter() > deadline:
                    raise RuntimeError("RabbitMQ consumers did not start")
                await asyncio.sleep(0.02)
        start = time.perf_counter()

        async def produce(worker: int) -> None:  # one workspace per producer, as concurrent requests
            for i in range(worker * per_tx, n, per_tx * producers):
                async with db.tenant(f"ws-{worker}") as session:
                    for j in range(i, min(n, i + per_tx)):
                        emit(session, type=TOPIC, data={"n": j})

        await asyncio.gather(*(produce(w) for w in range(producers)))
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - start
    finally:
        await bus.stop()
        if options:
            conn = await aio_pika.connect(bus_url)
            async with conn:
                channel = await conn.channel()
                for queue in (f"{prefix}.consumer.bench", f"{prefix}.dead-letter"):
                    await channel.queue_delete(queue, if_unused=False, if_empty=False)
                for exchange in (f"{prefix}.events", f"{prefix}.dlx"):
                    await channel.exchange_delete(exchange)
    return Result(name, n, elapsed)


def fresh_database(url: str | None, workdir: str) -> Database:
    if url:
        db = Database(url)
    else:
        db = Database(f"sqlite+aiosqlite:///{workdir}/bench-{uuid.uuid4().hex[:6]}.db")
    db.upgrade()
    return db


async def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR)
    results: list[Result] = []
    kind = "PostgreSQL" if args.database_url else "SQLite"
    have_broker = reachable(args.amqp_url)
    with tempfile.TemporaryDirectory() as workdir:
        if have_broker:
            results.append(await bare_aio_pika(args.amqp_url, args.events, args.batch, 50))
        else:
            print(f"RabbitMQ not reachable at {args.amqp_url}: only the embedded row is measured", file=sys.stderr)
        if args.database_url and not args.database_url.startswith("sqlite"):
            print("note: the PostgreSQL database must be empty and migrated (rows are not cleaned)",
                  file=sys.stderr)
        db = fresh_database(args.database_url, workdir)
        try:
            results.append(await through_bus(f"embedded ({kind})", db, "embedded://", args.events,
                                             args.per_tx, args.batch, args.producers))
        finally:
            await db.dispose()
        if have_broker:
            db = fresh_database(args.database_url, workdir)
            try:
                results.append(await through_bus(f"rabbitmq ({kind})", db, args.amqp_url, args.events,
                                                 args.per_tx, args.batch, args.producers))
            finally:
                await db.dispose()
    baseline = results[0].rate if have_broker else None
    print(f"\n{args.events} events, {args.producers} producers, {args.per_tx} event(s) per emitting transaction,"
          f" relay batch {args.batch}\n")
    print(f"{'path':<28}{'seconds':>10}{'events/s':>12}{'vs bare aio-pika':>18}")
    for r in results:
        ratio = f"{r.rate / baseline:.2f}" if baseline else "n/a"
        print(f"{r.name:<28}{r.seconds:>10.2f}{r.rate:>12.0f}{ratio:>18}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--per-tx", type=int, default=1, help="events emitted per database transaction")
    parser.add_argument("--producers", type=int, default=4, help="concurrent emitting tasks (one workspace each)")
    parser.add_argument("--batch", type=int, default=200, help="relay batch size (and baseline publish batch)")
    parser.add_argument("--amqp-url", default=os.environ.get("IONFLUX_TEST_AMQP_URL",
                                                             "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    sys.exit(asyncio.run(main(parser.parse_args())))
