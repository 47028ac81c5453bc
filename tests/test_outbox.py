"""The transactional outbox and the embedded bus, on SQLite and PostgreSQL, and the /v1/events API."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import Backoff, Event, EventBus, OutboxRelay, emit, emit_many
from ionflux.core.bus.consumers import deliver_once
from ionflux.core.bus.outbox import outbox_row
from ionflux.core.bus.relay import PublishFailure, PublishOutcome
from ionflux.core.db import Database, TenancyViolation
from ionflux.core.errors import Conflict, InvalidRequest
from ionflux.core.models import OutboxEvent, ProcessedEvent, Workspace

from .polling import outbox_rows, until

if TYPE_CHECKING:
    from .conftest import WorkspaceHandle

TOPIC = "platform.test.events.orders.created"
FAST = Backoff(base=0.01, cap=0.05)


async def emit_one(db: Database, workspace_id: str, topic: str = TOPIC, **data: Any) -> Event:
    async with db.tenant(workspace_id) as s:
        return emit(s, type=topic, data=data)


@pytest.fixture
async def bus(database: Database) -> AsyncIterator[EventBus]:
    # A long poll interval: delivery within the test deadlines proves the commit hook wakes the relay.
    bus = EventBus(database, relay_poll_seconds=60, max_deliveries=3, backoff=FAST)
    yield bus
    await bus.stop()


async def test_event_commits_and_rolls_back_with_the_state_change(database: Database, bus: EventBus) -> None:
    seen: list[Event] = []

    async def record(event: Event, session: AsyncSession) -> None:
        seen.append(event)

    bus.subscribe("audit", ["platform.test.events.#"], record)
    await bus.start()

    with pytest.raises(RuntimeError, match="boom"):
        async with database.system() as s:
            s.add(Workspace(id="ws-rolled-back", name="never"))
            emit(s, type=TOPIC, data={"n": 0}, workspace_id="ws-rolled-back")
            raise RuntimeError("boom")
    assert await outbox_rows(database) == []

    async with database.system() as s:
        s.add(Workspace(id="ws-1", name="kept"))
        event = emit(s, type=TOPIC, data={"n": 1}, subject="order-1", workspace_id="ws-1")

    await until(lambda: len(seen) == 1)
    assert seen[0].id == event.id
    assert (seen[0].workspace_id, seen[0].data, seen[0].subject) == ("ws-1", {"n": 1}, "order-1")

    async def published() -> bool:  # the relay marks the row once every consumer has it
        return [(r.id, r.status) for r in await outbox_rows(database)] == [(event.id, "published")]

    await until(published)
    assert (await outbox_rows(database))[0].published_at is not None
    async with database.system() as s:
        assert await s.get(Workspace, "ws-1") is not None
        assert await s.get(Workspace, "ws-rolled-back") is None


async def test_emit_validates_topic_and_tenant(database: Database) -> None:
    async with database.tenant("ws-1") as s:
        with pytest.raises(InvalidRequest) as info:
            emit(s, type="orders.created", data={})
        assert info.value.field == "type"
        with pytest.raises(InvalidRequest) as info:
            emit(s, type=TOPIC, data={"when": object()})
        assert info.value.field == "data"
    assert await outbox_rows(database) == []


async def test_patterns_route_like_amqp_topics(database: Database, bus: EventBus) -> None:
    got: dict[str, list[str]] = {"orders": [], "created": [], "all": []}

    def recorder(name: str) -> Callable[[Event, AsyncSession], Awaitable[None]]:
        async def handler(event: Event, session: AsyncSession) -> None:
            got[name].append(event.type)
        return handler

    bus.subscribe("orders", ["platform.shopify.events.orders.*"], recorder("orders"))
    bus.subscribe("created", ["#.created"], recorder("created"))
    bus.subscribe("all", ["#"], recorder("all"))
    await bus.start()
    topics = ["platform.shopify.events.orders.created", "platform.shopify.events.orders.paid",
              "platform.tiktok.events.videos.created", "platform.shopify.events.products.updated"]
    for topic in topics:
        await emit_one(database, "ws-1", topic)
    await until(lambda: len(got["all"]) == 4)
    assert got["orders"] == topics[:2]
    assert got["created"] == [topics[0], topics[2]]
    assert got["all"] == topics  # one workspace: outbox order


async def test_consumer_seeing_an_event_twice_acts_once(database: Database, bus: EventBus) -> None:
    calls: Counter[str] = Counter()

    async def create_workspace(event: Event, session: AsyncSession) -> None:
        calls[event.id] += 1
        session.add(Workspace(id=f"from-{event.id}", name="made by a consumer"))

    sub = bus.subscribe("maker", [TOPIC], create_workspace)
    event = Event(type=TOPIC, data={}, workspace_id="ws-1")
    assert await deliver_once(database, sub, event) is True
    assert await deliver_once(database, sub, event) is False
    # Concurrent duplicates too: the processed marker's primary key makes the second one wait, then skip.
    again = Event(type=TOPIC, data={}, workspace_id="ws-1")
    results = await asyncio.gather(*(deliver_once(database, sub, again) for _ in range(3)))
    assert sorted(results) == [False, False, True]
    # Through the transport: the same event published twice reaches the handler once.
    third = Event(type=TOPIC, data={}, workspace_id="ws-1")
    assert await bus.transport.publish([third, third]) == [None, None]
    assert calls == {event.id: 1, again.id: 1, third.id: 1}
    async with database.system() as s:
        made = await s.scalar(select(func.count()).select_from(Workspace).where(Workspace.id.like("from-%")))
        markers = await s.scalar(select(func.count()).select_from(ProcessedEvent))
    assert (made, markers) == (3, 3)


async def test_emit_many_writes_what_emit_writes_and_checks_the_same(database: Database, bus: EventBus) -> None:
    got: list[Event] = []

    async def record(event: Event, session: AsyncSession) -> None:
        got.append(event)

    bus.subscribe("many", ["platform.test.events.#"], record)
    await bus.start()
    items = [(TOPIC, {"n": i, "text": "ç", "nested": {"ok": [1, 2]}}, f"order/{i}") for i in range(3)]
    items.append(("platform.test.events.refunds.created", {}, None))
    async with database.tenant("ws-1") as s:
        made = await emit_many(s, items, source="/tests")
    await until(lambda: len(got) == 4)  # the commit woke the relay
    assert [(e.id, e.type, e.data, e.subject, e.source, e.workspace_id) for e in got] == [
        (m.id, t, d, sub, "/tests", "ws-1") for m, (t, d, sub) in zip(made, items, strict=True)]

    async def marked() -> bool:  # the relay marks a batch after its consumers have committed
        rows = {r.id: r for r in await outbox_rows(database)}
        return {rows[m.id].status for m in made} == {"published"}
    await until(marked)
    rows = {r.id: r for r in await outbox_rows(database)}
    assert {rows[m.id].attempts for m in made} == {0}
    with pytest.raises(InvalidRequest, match=r"topic|type"):
        async with database.tenant("ws-1") as s:
            await emit_many(s, [(TOPIC, {}, None), ("not a topic", {}, None)])
    with pytest.raises(InvalidRequest, match="JSON"):
        async with database.tenant("ws-1") as s:
            await emit_many(s, [(TOPIC, {"when": object()}, None)])
    with pytest.raises(TenancyViolation):
        async with database.tenant("ws-1") as s:
            await emit_many(s, [(TOPIC, {}, None)], workspace_id="ws-2")
    assert len(await outbox_rows(database)) == 4  # nothing of the refused calls was written


async def test_a_batch_is_one_transaction_and_a_bad_event_fails_only_itself(database: Database,
                                                                              bus: EventBus) -> None:
    sessions: dict[str, int] = {}

    async def maker(event: Event, session: AsyncSession) -> None:
        sessions[event.id] = id(session)
        if event.data.get("bad"):
            raise ValueError("this event is bad")
        session.add(Workspace(id=f"from-{event.id}", name="made by a consumer"))

    bus.subscribe("batch-maker", [TOPIC], maker)
    good = [Event(type=TOPIC, data={"n": i}, workspace_id="ws-1") for i in range(4)]
    assert await bus.transport.publish(good) == [None] * 4
    assert len(set(sessions.values())) == 1  # the four events went through one transaction
    sessions.clear()
    bad = Event(type=TOPIC, data={"bad": True}, workspace_id="ws-1")
    mixed = [Event(type=TOPIC, data={}, workspace_id="ws-1"), bad, Event(type=TOPIC, data={}, workspace_id="ws-1")]
    outcomes = await bus.transport.publish(mixed)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PublishFailure) and "batch-maker: ValueError: this event is bad" in outcomes[1].error
    async with database.system() as s:
        made = set((await s.scalars(select(Workspace.id).where(Workspace.id.like("from-%")))).all())
        marked = set((await s.scalars(select(ProcessedEvent.event_id))).all())
    expected = {e.id for e in [*good, mixed[0], mixed[2]]}
    assert made == {f"from-{i}" for i in expected} and marked == expected  # nothing of the bad event kept
    # Published again (as the relay retries), only the bad event's handler runs.
    sessions.clear()
    assert (await bus.transport.publish(mixed))[1] is not None
    assert set(sessions) == {bad.id}


async def test_a_batch_handler_gets_the_chunk_at_once_and_a_failure_falls_back_to_one_by_one(
        database: Database, bus: EventBus) -> None:
    calls: list[list[int]] = []
    singles: list[int] = []

    async def one(event: Event, session: AsyncSession) -> None:
        singles.append(event.data["n"])
        if event.data.get("bad"):
            raise ValueError("this event is bad")
        session.add(Workspace(id=f"one-{event.id}", name="made by a consumer"))

    async def many(events: list[Event], session: AsyncSession) -> None:
        calls.append([e.data["n"] for e in events])
        for event in events:
            if event.data.get("bad"):
                raise ValueError("this event is bad")
            session.add(Workspace(id=f"many-{event.id}", name="made by a consumer"))

    bus.subscribe("batched", [TOPIC], one, batch=many)
    good = [Event(type=TOPIC, data={"n": i}, workspace_id="ws-1") for i in range(5)]
    assert await bus.transport.publish(good) == [None] * 5
    assert calls == [[0, 1, 2, 3, 4]] and singles == []  # one call, in outbox order
    assert await bus.transport.publish(good) == [None] * 5  # published again: nothing acts twice
    assert calls == [[0, 1, 2, 3, 4]]
    calls.clear()
    mixed = [Event(type=TOPIC, data={"n": 10}, workspace_id="ws-1"),
             Event(type=TOPIC, data={"n": 11, "bad": True}, workspace_id="ws-1"),
             Event(type=TOPIC, data={"n": 12}, workspace_id="ws-1")]
    outcomes = await bus.transport.publish(mixed)
    # The batch failed as a whole; delivered one by one, only the bad event fails.
    assert calls == [[10, 11, 12]] and singles == [10, 11, 12]
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], PublishFailure) and "batched: ValueError: this event is bad" in outcomes[1].error
    async with database.system() as s:
        made = set((await s.scalars(select(Workspace.id).where(Workspace.name == "made by a consumer"))).all())
    assert made == {f"many-{e.id}" for e in good} | {f"one-{mixed[0].id}", f"one-{mixed[2].id}"}


async def test_events_committed_in_this_process_are_relayed_without_reading_their_rows_back(
        database: Database, bus: EventBus) -> None:
    seen: list[Event] = []

    async def record(event: Event, _session: AsyncSession) -> None:
        seen.append(event)

    bus.subscribe("known", [TOPIC], record)
    await bus.start()
    made = [outbox_row(type=TOPIC, data={"n": i}, workspace_id="ws-1") for i in range(3)]
    async with database.system() as session:  # as the webhook inbox writes its events: the rows by hand
        await session.execute(insert(OutboxEvent), [row for _, row in made])
        # Handed over before the commit here (the relay's first round may run any time after it); the second
        # event is not handed over: it is read back from its row.
        bus.committed([made[0][0], made[2][0]])
    bus.wake()  # as the inbox does after its commits (a session that did not emit() wakes nobody)
    await until(lambda: len(seen) == 3, timeout=10)
    assert [e.id for e in seen] == [e.id for e, _ in made]  # outbox order, whichever way each came
    assert seen[0] is made[0][0] and seen[2] is made[2][0]
    assert seen[1] is not made[1][0] and seen[1] == made[1][0]
    assert bus.relay._known == {}


async def test_only_outbox_backed_consumer_commits_skip_the_flush(database: Database, bus: EventBus) -> None:
    seen: dict[str, str] = {}

    async def record(event: Event, session: AsyncSession) -> None:
        seen[event.id] = "n/a" if database.is_sqlite else str(await session.scalar(text("SHOW synchronous_commit")))

    sub = bus.subscribe("durability", [TOPIC], record)
    embedded = [Event(type=TOPIC, data={}, workspace_id="ws-1") for _ in range(3)]
    assert await bus.transport.publish(embedded[:1]) == [None]
    assert await bus.transport.publish(embedded[1:]) == [None, None]
    broker = Event(type=TOPIC, data={}, workspace_id="ws-1")
    assert await deliver_once(database, sub, broker) is True  # as the RabbitMQ consumer calls it
    if database.is_sqlite:
        return
    assert [seen[e.id] for e in embedded] == ["off"] * 3  # the outbox row is redelivered if this is lost
    assert seen[broker.id] == "on"  # a broker delivery is acknowledged after this commit: it must be on disk


async def test_handler_failure_rolls_back_its_writes_and_the_marker(database: Database, bus: EventBus) -> None:
    attempts: list[int] = []

    async def flaky(event: Event, session: AsyncSession) -> None:
        attempts.append(1)
        session.add(Workspace(id=f"from-{event.id}", name="x"))
        await session.flush()
        if len(attempts) == 1:
            raise RuntimeError("transient")

    sub = bus.subscribe("flaky", [TOPIC], flaky)
    event = Event(type=TOPIC, data={}, workspace_id="ws-1")
    with pytest.raises(RuntimeError):
        await deliver_once(database, sub, event)
    assert await deliver_once(database, sub, event) is True
    assert await deliver_once(database, sub, event) is False
    async with database.system() as s:
        assert await s.get(Workspace, f"from-{event.id}") is not None
    assert len(attempts) == 2


async def test_poison_event_goes_dead_after_max_deliveries_and_does_not_block(
    database: Database, bus: EventBus
) -> None:
    poison_calls: list[str] = []
    healthy: list[str] = []

    async def poison(event: Event, session: AsyncSession) -> None:
        poison_calls.append(event.id)
        raise ValueError("cannot handle this order")

    async def record(event: Event, session: AsyncSession) -> None:
        healthy.append(event.id)

    bus.subscribe("poisoned", ["platform.test.events.orders.*"], poison)
    bus.subscribe("healthy", ["#"], record)
    await bus.start()
    bad = await emit_one(database, "ws-1", TOPIC)
    good = await emit_one(database, "ws-1", "platform.test.events.refunds.created")

    async def bad_is_dead() -> bool:
        return any(r.id == bad.id and r.status == "dead" for r in await outbox_rows(database))

    await until(bad_is_dead)
    rows = {r.id: r for r in await outbox_rows(database)}
    assert rows[bad.id].attempts == 3  # max_deliveries
    assert "consumer poisoned" in (rows[bad.id].last_error or "")
    assert "cannot handle this order" in (rows[bad.id].last_error or "")
    assert rows[good.id].status == "published"
    assert poison_calls == [bad.id] * 3
    assert sorted(healthy) == sorted([bad.id, good.id])  # the healthy consumer acted once on each


async def test_database_trouble_in_a_consumer_never_dead_letters(database: Database, bus: EventBus) -> None:
    failures = 5  # more than max_deliveries=3

    async def unlucky(event: Event, session: AsyncSession) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("INSERT ...", {}, Exception("database is locked"))

    bus.subscribe("unlucky", [TOPIC], unlucky)
    await bus.start()
    await emit_one(database, "ws-1")

    async def published() -> bool:
        return [r.status for r in await outbox_rows(database)] == ["published"]

    await until(published)
    assert (await outbox_rows(database))[0].attempts == 5


class FlakyTransport:
    """Down for the first `outage` batches, then refuses `nacks` times each event in `refuse`."""

    name = "flaky"

    def __init__(self, outage: int, refuse: set[str] | None = None, nacks: int = 0) -> None:
        self.outage = outage
        self.refuse = refuse or set()
        self.nacks: Counter[str] = Counter({e: nacks for e in self.refuse})
        self.delivered: list[str] = []
        self.calls = 0

    async def publish(self, events: Sequence[Event]) -> list[PublishOutcome]:
        self.calls += 1
        if self.calls <= self.outage:
            raise ConnectionRefusedError("broker down (password=hunter2)")
        outcomes: list[PublishOutcome] = []
        for event in events:
            if self.nacks[event.id] > 0:
                self.nacks[event.id] -= 1
                outcomes.append(PublishFailure("nacked"))
            else:
                self.delivered.append(event.id)
                outcomes.append(None)
        return outcomes


async def test_relay_retries_a_failing_transport_and_delivers_everything(database: Database) -> None:
    emitted = [await emit_one(database, "ws-1", n=i) for i in range(12)]
    refused = emitted[3].id
    transport = FlakyTransport(outage=3, refuse={refused}, nacks=2)
    relay = OutboxRelay(database, transport, batch_size=5, poll_seconds=0.05, backoff=FAST)
    relay.start()
    try:
        async def all_published() -> bool:
            return all(r.status == "published" for r in await outbox_rows(database))

        await until(all_published)
    finally:
        await relay.stop()
    ids = [e.id for e in emitted]
    assert sorted(transport.delivered) == sorted(ids) and len(transport.delivered) == len(ids)
    others = [i for i in transport.delivered if i != refused]
    assert others == [i for i in ids if i != refused]  # order kept through the outage
    rows = {r.id: r for r in await outbox_rows(database)}
    assert rows[ids[0]].attempts == 3  # three failed tries during the outage, none lost
    assert "broker down" in (rows[ids[0]].last_error or "")
    assert "hunter2" not in (rows[ids[0]].last_error or "")  # errors are redacted
    assert rows[refused].attempts == 5 and rows[refused].last_error == "nacked"
    assert transport.calls > 3


async def test_outbox_max_attempts_marks_events_dead(database: Database) -> None:
    event = await emit_one(database, "ws-1")
    relay = OutboxRelay(database, FlakyTransport(outage=0, refuse={event.id}, nacks=99),
                        max_attempts=2, backoff=FAST)
    await relay.run_once()
    [row] = await outbox_rows(database)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at.replace(tzinfo=None) > row.time.replace(tzinfo=None)  # backed off
    await until(lambda: relay.run_once())  # runs again once the row is due
    [row] = await outbox_rows(database)
    assert (row.status, row.attempts) == ("dead", 2)


async def test_processed_markers_are_purged_after_retention(database: Database, bus: EventBus) -> None:
    async def noop(event: Event, session: AsyncSession) -> None:
        return None

    sub = bus.subscribe("noop", [TOPIC], noop)
    await deliver_once(database, sub, Event(type=TOPIC, data={}, workspace_id="ws-1"))
    assert await bus.purge_processed() == 0
    bus.processed_retention_days = -1  # everything is now older than the retention
    assert await bus.purge_processed() == 1


# -- HTTP -----------------------------------------------------------------------------------------


async def _post(client: httpx.AsyncClient, ws: WorkspaceHandle, topic: str, **data: Any) -> str:
    r = await client.post("/v1/events", json={"type": topic, "data": data}, headers=ws.headers)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_events_api_pages_filters_and_isolates_workspaces(
    client: httpx.AsyncClient, workspace: WorkspaceHandle, other_workspace: WorkspaceHandle
) -> None:
    topics = ["platform.shop.events.orders.created", "platform.shop.events.orders.paid",
              "platform.shop.events.refunds.created", "platform.crm.events.contacts.created",
              "platform.shop.events.orders.created"]
    ids = [await _post(client, workspace, t, n=i) for i, t in enumerate(topics)]
    theirs = await _post(client, other_workspace, "platform.shop.events.orders.created", secret="b")

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        r = await client.get("/v1/events", params=params, headers=workspace.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([e["id"] for e in body["events"]])
        after = body["next_after"]
        if after is None:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]

    r = await client.get("/v1/events", params={"limit": 10}, headers=workspace.headers)
    first = r.json()["events"][0]
    assert first["specversion"] == "1.0" and first["datacontenttype"] == "application/json"
    assert (first["type"], first["data"], first["workspace_id"]) == (topics[0], {"n": 0}, workspace.id)
    assert first["source"] and first["time"].endswith("Z")

    r = await client.get("/v1/events", params={"topic": "platform.shop.events.orders.*"}, headers=workspace.headers)
    assert [e["id"] for e in r.json()["events"]] == [ids[0], ids[1], ids[4]]
    r = await client.get("/v1/events", params={"topic": "#.created", "limit": 2}, headers=workspace.headers)
    assert [e["id"] for e in r.json()["events"]] == [ids[0], ids[2]]
    assert r.json()["next_after"] == ids[2]
    r = await client.get("/v1/events", params={"topic": "#.created", "after": ids[2]}, headers=workspace.headers)
    assert [e["id"] for e in r.json()["events"]] == [ids[3], ids[4]]

    r = await client.get("/v1/events", headers=other_workspace.headers)
    assert [e["id"] for e in r.json()["events"]] == [theirs]
    # B cannot even use A's event id as a cursor: it does not exist in B's workspace.
    r = await client.get("/v1/events", params={"after": ids[0]}, headers=other_workspace.headers)
    assert r.status_code == 400 and r.json()["error"]["field"] == "after"


async def test_events_api_rejects_bad_parameters(client: httpx.AsyncClient, workspace: WorkspaceHandle) -> None:
    h = workspace.headers
    for limit in ("0", "501", "many"):
        r = await client.get("/v1/events", params={"limit": limit}, headers=h)
        assert r.status_code in (400, 422) and "limit" in r.text, r.text
    r = await client.get("/v1/events", params={"after": str(uuid.uuid4())}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "after"
    r = await client.get("/v1/events", params={"topic": "Orders!"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "topic"
    r = await client.post("/v1/events", json={"type": "orders.created", "data": {}}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["field"] == "type"
    r = await client.post("/v1/events", json={"type": TOPIC, "data": {}, "extra": 1}, headers=h)
    assert r.status_code in (400, 422) and "extra" in r.text
    r = await client.post("/v1/events", json={"type": TOPIC, "data": [1]}, headers=h)
    assert r.status_code in (400, 422) and "data" in r.text
    r = await client.get("/v1/events")
    assert r.status_code == 401


async def test_two_relays_never_publish_the_same_rows(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("SQLite has a single writer: one relay per database by design")
    emitted = [await emit_one(database, f"ws-{i % 3}", n=i) for i in range(30)]
    held = asyncio.Event()
    release = asyncio.Event()

    class Recording:
        name = "recording"

        def __init__(self, hold: bool) -> None:
            self.hold = hold
            self.delivered: list[str] = []

        async def publish(self, events: Sequence[Event]) -> list[PublishOutcome]:
            self.delivered += [e.id for e in events]
            if self.hold:  # keep the batch's row locks while the other relay runs
                held.set()
                await release.wait()
            return [None] * len(events)

    slow, fast = Recording(hold=True), Recording(hold=False)
    first = asyncio.create_task(OutboxRelay(database, slow, batch_size=10).run_once())
    await asyncio.wait_for(held.wait(), 10)
    second = OutboxRelay(database, fast, batch_size=10)
    assert await second.run_once() == 10
    assert await second.run_once() == 10
    assert await second.run_once() == 0  # the locked batch is skipped, not waited for
    release.set()
    assert await first == 10
    assert not set(slow.delivered) & set(fast.delivered)
    assert sorted(slow.delivered + fast.delivered) == sorted(e.id for e in emitted)
    assert {r.status for r in await outbox_rows(database)} == {"published"}


async def test_consumer_names_are_unique_and_safe(bus: EventBus) -> None:
    async def noop(event: Event, session: AsyncSession) -> None:
        return None

    bus.subscribe("billing", ["platform.stripe.events.#"], noop)
    with pytest.raises(Conflict):
        bus.subscribe("billing", ["#"], noop)
    for name, patterns in (("Bad Name", ["#"]), ("ok", []), ("ok", ["platform..x"])):
        with pytest.raises(InvalidRequest):
            bus.subscribe(name, patterns, noop)
    assert bus.healthy()
