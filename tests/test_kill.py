"""Kill test: a server accepting events is SIGKILLed mid-stream; after restart every accepted event
is delivered (RabbitMQ) — nothing a client was told "accepted" is lost."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import aio_pika
import httpx

from .server import ServerProcess


def _post_until_killed(url: str, headers: dict[str, str], accepted: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as http:
        for n in range(100_000):
            if stop.is_set():
                return
            try:
                r = http.post(f"{url}/v1/events", headers=headers,
                              json={"type": "platform.test.events.kills.counted", "data": {"n": n}})
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 202:
                accepted.append(r.json()["id"])


def _create_workspace(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "ionflux.cli", "workspace", "create", "kill", "--json"],
                         env={**os.environ, **env}, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         check=True)
    body: dict[str, str] = json.loads(out.stdout)
    return body


async def test_sigkill_mid_stream_loses_no_accepted_event(tmp_path: Path, amqp_url: str) -> None:
    env = {"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": "",
           "IONFLUX_BUS_URL": amqp_url, "IONFLUX_LOG_LEVEL": "WARNING"}
    ws = _create_workspace(tmp_path, env)
    headers = {"Authorization": f"Bearer {ws['token']}"}

    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel()
    exchange = await channel.declare_exchange("ionflux.events", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"test.kill.{uuid.uuid4().hex[:8]}", durable=True)
    await queue.bind(exchange, routing_key="platform.test.events.kills.#")

    server = ServerProcess(env, tmp_path)
    accepted: list[str] = []
    try:
        server.start()
        stop = threading.Event()
        poster = threading.Thread(target=_post_until_killed, args=(server.url, headers, accepted, stop))
        poster.start()
        deadline = time.monotonic() + 30
        while len(accepted) < 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL, mid-stream
        stop.set()
        poster.join(timeout=10)
        assert len(accepted) >= 200, "the server accepted too few events before the kill"

        server.start()
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        wanted = set(accepted)
        while not wanted <= seen and time.monotonic() < deadline:
            message = await queue.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                continue
            seen.add(json.loads(message.body)["id"])
        missing = wanted - seen
        assert not missing, f"{len(missing)} of {len(wanted)} accepted events never delivered"
    finally:
        server.stop()
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()


async def test_sigkill_embedded_keeps_every_accepted_event(tmp_path: Path) -> None:
    """Embedded bus: every accepted event is in the outbox after the kill and is published after restart."""
    env = {"IONFLUX_DATA_DIR": str(tmp_path / "data"), "IONFLUX_DATABASE_URL": "",
           "IONFLUX_BUS_URL": "embedded://", "IONFLUX_LOG_LEVEL": "WARNING"}
    ws = _create_workspace(tmp_path, env)
    headers = {"Authorization": f"Bearer {ws['token']}"}
    server = ServerProcess(env, tmp_path)
    accepted: list[str] = []
    try:
        server.start()
        stop = threading.Event()
        poster = threading.Thread(target=_post_until_killed, args=(server.url, headers, accepted, stop))
        poster.start()
        deadline = time.monotonic() + 30
        while len(accepted) < 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        server.kill()
        stop.set()
        poster.join(timeout=10)

        server.start()
        listed: set[str] = set()
        after: str | None = None
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:
            for _ in range(1000):
                params = {"limit": "500", **({"after": after} if after else {})}
                page = (await http.get("/v1/events", params=params)).json()
                listed.update(e["id"] for e in page["events"])
                after = page["next_after"]
                if not after:
                    break
        assert set(accepted) <= listed
    finally:
        server.stop()
