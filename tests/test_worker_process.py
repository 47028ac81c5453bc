"""`ionflux serve`'s background work: in a child `ionflux worker` (niced, dying with the server, woken across
processes by NOTIFY on PostgreSQL and through its stdin on SQLite)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from ionflux.core.bus import EventBus, emit
from ionflux.core.db import Database
from ionflux.core.models import Connection, OutboxEvent
from ionflux.core.webhooks import WebhookDelivery
from ionflux.core.workspaces import WorkspaceDirectory
from ionflux.worker_process import WorkerProcess

from .polling import until
from .server import ServerProcess
from .webhook_helpers import SHOP, SHOPIFY_SECRET, shopify_headers


def _children(pid: int) -> list[int]:
    """Children of every thread of `pid` (a restarted worker is forked by the server's watcher thread)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _state_and_nice(pid: int) -> tuple[str, int]:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[16])  # state, nice (fields 3 and 19 of proc(5))


def _gone(pid: int) -> bool:
    try:
        return _state_and_nice(pid)[0] in ("Z", "X")  # a zombie has exited (init reaps it when it can)
    except FileNotFoundError:
        return True


async def _status(db: Database, event_id: str) -> str | None:
    async with db.system() as session:
        return await session.scalar(select(OutboxEvent.status).where(OutboxEvent.id == event_id))


async def test_serve_runs_the_relay_in_a_niced_child_woken_by_the_servers_commits(
        database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    created = await WorkspaceDirectory(db).create("worker")
    async with db.tenant(created.id) as session:
        session.add(Connection(provider="shopify", external_id=SHOP))
    # The relay polls once a minute here: a delivery published within seconds was woken, by NOTIFY from the
    # server to the worker (PostgreSQL) or by a byte on the worker's stdin (SQLite).
    env = {"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": database_url,
           "IONFLUX_BUS_URL": "embedded://", "IONFLUX_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
           "IONFLUX_LOG_LEVEL": "WARNING", "IONFLUX_RELAY_POLL_SECONDS": "60"}
    server = ServerProcess(env, tmp_path)
    try:
        server.start()
        assert server.proc is not None
        children = _children(server.proc.pid)
        assert len(children) == 1
        cmdline = Path(f"/proc/{children[0]}/cmdline").read_bytes().split(b"\0")
        assert b"worker" in cmdline and str(server.proc.pid).encode() in cmdline
        assert (b"--wake-stdin" in cmdline) is db.is_sqlite
        await until(lambda: _state_and_nice(children[0])[1] == 19)  # it lowers its own priority first thing
        health = httpx.get(f"{server.url}/healthz", timeout=10).json()["worker"]
        assert health == {"mode": "child process", "state": "running", "pid": children[0], "restarts": 0,
                          "last_exit_code": None}
        body = json.dumps({"order": {"id": 1, "total_price": "9.00"}}).encode()
        answer = httpx.post(f"{server.url}/webhooks/shopify", content=body, timeout=10,
                            headers=shopify_headers(body, secret=SHOPIFY_SECRET, webhook_id="w-1", event_id="e-1"))
        assert answer.status_code == 200, answer.text
        async with db.system() as session:
            event_id = await session.scalar(select(WebhookDelivery.event_id)
                                            .where(WebhookDelivery.id == answer.json()["deliveries"][0]["id"]))
        assert event_id
        started = time.monotonic()
        await until(lambda: _published(db, event_id), timeout=20)
        # An event written by an API request's own transaction (not the webhook inbox) wakes it too.
        posted = httpx.post(f"{server.url}/v1/events", timeout=10, headers={"Authorization": f"Bearer {created.token}"},
                            json={"type": "platform.test.events.things.happened", "data": {"n": 1}})
        assert posted.status_code == 202, posted.text
        await until(lambda: _published(db, posted.json()["id"]), timeout=20)
        assert time.monotonic() - started < 15, "published by the poll, not by a wake-up"
        os.kill(children[0], signal.SIGKILL)  # the worker dies: the server restarts it and /healthz says so

        def restarted() -> bool:
            worker = httpx.get(f"{server.url}/healthz", timeout=10).json()["worker"]
            return bool(worker["restarts"] == 1 and worker["state"] == "running" and worker["last_exit_code"] == -9)
        await until(restarted, timeout=20)
        assert server.proc is not None
        again = _children(server.proc.pid)
        assert len(again) == 1 and again[0] != children[0]
        server.kill()  # SIGKILL: the child gets SIGTERM from the kernel and leaves no orphan behind
        await until(lambda: _gone(again[0]), timeout=15)
    finally:
        server.stop()
        await db.dispose()


async def _published(db: Database, event_id: str) -> bool:
    return await _status(db, event_id) == "published"


async def test_a_commit_in_one_process_wakes_a_relay_listening_in_another(database: Database) -> None:
    """On PostgreSQL, an API-only bus (no relay) NOTIFYs; a relay elsewhere polling once a minute wakes."""
    if database.is_sqlite:
        return  # one process per SQLite database: the in-process wake-up is tested with the relay
    created = await WorkspaceDirectory(database).create("notify")
    api_db, worker_db = Database(database.url), Database(database.url)
    api, worker = EventBus(api_db, relay_poll_seconds=60), EventBus(worker_db, relay_poll_seconds=60)
    seen: list[str] = []

    async def record(event: object, _session: object) -> None:
        seen.append(getattr(event, "id", ""))

    worker.subscribe("notify-test", ["platform.test.#"], record)  # type: ignore[arg-type]
    await api.start(relay=False, consumers=False)
    await worker.start()
    try:
        assert worker._listener is not None
        await until(worker._listener.listening.is_set)
        async with api_db.tenant(created.id) as session:
            event = emit(session, type="platform.test.events.things.happened", data={"n": 1})
        await until(lambda: event.id in seen, timeout=10)
    finally:
        await api.stop()
        await worker.stop()
        await api_db.dispose()
        await worker_db.dispose()


async def test_the_server_restarts_a_worker_that_exits_and_stops_one_that_runs() -> None:
    crashing = WorkerProcess(only=[], nice=0, restart_seconds=0.05, max_restart_seconds=0.1)
    crashing.argv = [sys.executable, "-c", "raise SystemExit(3)"]
    crashing.start()
    try:
        await until(lambda: crashing.restarts >= 2, timeout=20)
    finally:
        crashing.stop()

    running = WorkerProcess(only=[], nice=0, grace_seconds=5)
    running.argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    running.start()
    assert running.proc is not None
    pid = running.proc.pid
    running.stop()
    assert running.proc.returncode == -signal.SIGTERM
    assert _gone(pid) or not os.path.exists(f"/proc/{pid}")
    assert running.restarts == 0
