"""The email worker: sends what became due (scheduled `send_at`, retries) and settles interrupted sends.

It is machinery like the outbox relay: one query per round finds due message ids across workspaces (a
`db.system()` read of ids only), then every step runs inside that workspace's own tenant transaction.
It wakes on its poll interval or at once when a request schedules something.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from ionflux.core.db import Database
from ionflux.core.models import utcnow
from ionflux.core.waiting import wake_or_timeout
from ionflux.email.dispatch import Dispatcher
from ionflux.email.models import EmailMessage

log = logging.getLogger("ionflux.email.worker")


class EmailWorker:
    def __init__(self, db: Database, dispatcher: Dispatcher, *, poll_seconds: float, batch: int = 5000,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._forever(), name="ionflux-email-worker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("email worker round failed; retrying on the next round")
            await wake_or_timeout(self._wake, self.poll_seconds)
            self._wake.clear()

    async def run_once(self) -> int:
        """One round: settle expired claims, then send everything due. Returns how many messages it handled."""
        now = self.clock()
        async with self.db.system() as session:
            due = (await session.execute(
                select(EmailMessage.workspace_id, EmailMessage.id)
                .where(EmailMessage.status == "queued", EmailMessage.claimed_until.is_(None),
                       EmailMessage.next_attempt_at <= now)
                .order_by(EmailMessage.next_attempt_at).limit(self.batch))).all()
            stuck = (await session.execute(
                select(EmailMessage.workspace_id, EmailMessage.id)
                .where(EmailMessage.status == "queued", EmailMessage.claimed_until < now)
                .limit(self.batch))).all()
        handled = 0
        for workspace_id, ids in _by_workspace(stuck).items():
            handled += await self.dispatcher.expire_claims(workspace_id, ids)
        for workspace_id, ids in _by_workspace(due).items():
            report = await self.dispatcher.run(workspace_id, ids)
            handled += report.sent + report.failed + report.requeued
        return handled


def _by_workspace(rows: object) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for workspace_id, message_id in rows:  # type: ignore[attr-defined]
        grouped[workspace_id].append(message_id)
    return grouped
