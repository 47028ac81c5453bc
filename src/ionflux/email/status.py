"""Message statuses, how they advance, and recording a change: history row + bus event, in the caller's
transaction (so a status is never visible without its event, nor an event without its status).

    queued -> sent -> delivered -> opened -> clicked          (the happy path)
    deferred (temporary), bounced, dropped, failed            (delivery failures)
    complained, unsubscribed                                  (the recipient's say)

The summary status only moves forward (a late `delivered` never hides an `opened`); every observation is
kept in the history and published as `platform.email.events.messages.<status>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bulk import RowWriter
from ionflux.core.bus import emit_many
from ionflux.core.bus.envelope import format_time
from ionflux.email.models import EmailStatusChange

STATUSES = ("queued", "sent", "delivered", "opened", "clicked", "deferred", "bounced", "dropped", "failed",
            "complained", "unsubscribed")
_RANK = {"queued": 0, "deferred": 1, "sent": 1, "delivered": 2, "opened": 3, "clicked": 4, "bounced": 5,
         "dropped": 5, "failed": 5, "complained": 6, "unsubscribed": 6}
SOURCE = "/email"
_HISTORY = ("message_id", "status", "at", "recipient", "provider", "detail")
_NO_DETAIL: dict[str, Any] = {}  # one object for every history row without detail (processed once per flush)
EVENT_SLICE = 500  # events built and written at a time
_Change = tuple[str, str | None, tuple[str, ...], str, str]  # message id, batch id, tags, previous, current status


def advances(current: str, new: str) -> bool:
    if new == current:
        return False
    if new == "deferred":
        return current in ("queued", "sent")
    return _RANK[new] >= _RANK[current]


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Message(Protocol):
    """What recording needs of a message (an `EmailMessage`, or a `Tracked` for rows inserted in bulk)."""

    id: str
    batch_id: str | None
    tags: list[str]
    status: str
    status_at: datetime


@dataclass(slots=True)
class Tracked:
    id: str
    batch_id: str | None
    tags: list[str]
    status: str
    status_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Observation:
    status: str
    at: datetime
    recipient: str | None = None
    provider: str | None = None
    detail: dict[str, Any] | None = None


class StatusRecorder:
    """Collects status changes of one transaction; at `flush()` their history rows go in one multi-row insert
    and their events in multi-row inserts of `EVENT_SLICE` (a batch records thousands at once).

    What is kept until then is small: a run of changes sharing one observation holds, per message, a tuple of
    strings; each event is built just before its slice is written, so thousands of them are never alive at once
    (for the garbage collector, a batch's bookkeeping is then a few lists, not tens of thousands of objects)."""

    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self._runs: list[tuple[Observation, list[_Change]]] = []
        self._tags: tuple[object, tuple[str, ...]] = ((), ())  # the last message's tags, and as a tuple
        self._times: dict[datetime, str] = {}  # a batch records thousands of changes at the same moment

    def record(self, message: Message, seen: Observation) -> bool:
        """Apply one observation to `message`; True if its summary status moved."""
        previous = message.status
        moved = advances(previous, seen.status)
        if moved:
            message.status, message.status_at = seen.status, seen.at
        if message.tags is not self._tags[0]:  # a batch's messages share one tags list
            self._tags = (message.tags, tuple(message.tags or ()))
        change = (message.id, message.batch_id, self._tags[1], previous, message.status)
        if self._runs and self._runs[-1][0] is seen:
            self._runs[-1][1].append(change)
        else:
            self._runs.append((seen, [change]))
        return moved

    def _event(self, seen: Observation, change: _Change) -> tuple[str, dict[str, Any], str | None]:
        message_id, batch_id, tags, previous, current = change
        return (f"platform.email.events.messages.{seen.status}",
                {"message_id": message_id, "batch_id": batch_id, "status": seen.status, "previous_status": previous,
                 "current_status": current, "recipient": seen.recipient, "provider": seen.provider,
                 "tags": list(tags), "at": self._format(seen.at), "detail": seen.detail or {}},
                message_id)

    def _format(self, moment: datetime) -> str:
        text = self._times.get(moment)
        if text is None:
            text = self._times[moment] = format_time(moment)
        return text

    async def flush(self) -> None:
        runs, self._runs = self._runs, []
        if not runs:
            return
        history = RowWriter(self.session, cast(Table, EmailStatusChange.__table__), {"workspace_id": self.workspace_id},
                            _HISTORY, shared=("at", "detail"))
        for seen, changes in runs:
            detail = seen.detail or _NO_DETAIL
            for change in changes:
                history.add((change[0], seen.status, seen.at, seen.recipient, seen.provider, detail))
        await history.flush()
        events: list[tuple[str, dict[str, Any], str | None]] = []
        for seen, changes in runs:
            for change in changes:
                events.append(self._event(seen, change))
                if len(events) == EVENT_SLICE:
                    await emit_many(self.session, events, source=SOURCE)
                    events = []
        if events:
            await emit_many(self.session, events, source=SOURCE)
