"""Waking an outbox relay that runs in another process (PostgreSQL `LISTEN`/`NOTIFY`).

When the API and the relay share a process, a commit that wrote outbox rows wakes the relay directly.
When they do not (`ionflux serve` on PostgreSQL runs its relay in a worker process; `serve --no-worker`
next to `ionflux worker`), the relay would only find new rows at its next poll (`relay_poll_seconds`).
Instead, the process that wrote sends `NOTIFY ionflux_outbox` (at most one per `delay`: a burst of
commits costs one notification) and every relay listening on that channel wakes at once.

A notification is only a hint: if one is lost (the listener's connection dropped, the database
restarted), the relay's poll still finds the rows, and the listener reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
CHANNEL = "ionflux_outbox"


def asyncpg_dsn(url: str) -> str:
    """A SQLAlchemy `postgresql+asyncpg://` URL as asyncpg's own DSN."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class OutboxNotifier:
    """Sends the wake-up notification for commits of this process, coalesced to one per `delay`."""

    def __init__(self, url: str, *, delay: float = 0.02) -> None:
        self.dsn = asyncpg_dsn(url)
        self.delay = delay
        self._conn: Any = None
        self._pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    def notify(self) -> None:
        """Schedule a notification (call from the event loop; cheap, never blocks, never raises)."""
        if self._pending:
            return
        self._pending = True
        task = asyncio.get_running_loop().create_task(self._send(), name="ionflux-outbox-notify")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self) -> None:
        await asyncio.sleep(self.delay)
        self._pending = False  # commits from now on need a notification of their own
        try:
            if self._conn is None or self._conn.is_closed():
                import asyncpg

                self._conn = await asyncpg.connect(self.dsn)
            await self._conn.execute(f"NOTIFY {CHANNEL}")
        except Exception as exc:  # a hint only: the relay's poll picks the rows up
            log.debug("outbox notification not sent: %s", type(exc).__name__)
            await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.terminate()
            except Exception:  # already gone
                log.debug("closing the notify connection failed", exc_info=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


class OutboxListener:
    """Holds a connection that listens on the channel and calls `wake` for each notification."""

    def __init__(self, url: str, wake: Callable[[], None], *, retry_seconds: float = 1.0,
                 max_retry_seconds: float = 30.0) -> None:
        self.dsn = asyncpg_dsn(url)
        self.wake = wake
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while a LISTEN is in place (tests wait on it)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ionflux-outbox-listen")

    async def _run(self) -> None:
        import asyncpg

        delay = self.retry_seconds
        while True:
            conn = None
            lost: asyncio.Event = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn)
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                self.listening.set()
                delay = self.retry_seconds
                self.wake()  # rows committed while nobody listened
                await lost.wait()
                log.warning("the outbox listener's connection was lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox listener cannot connect (%s); the relay polls meanwhile", type(exc).__name__)
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(self.max_retry_seconds, delay * 2)

    def _on_notify(self, *_args: Any) -> None:
        self.wake()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _set(event: asyncio.Event, *_args: Any) -> None:
    event.set()
