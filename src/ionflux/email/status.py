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

from ionflux.core.bus import emit_many
from ionflux.core.bus.envelope import format_time
from ionflux.email.bulk import RowWriter
from ionflux.email.models import EmailStatusChange

STATUSES = ("queued", "sent", "delivered", "opened", "clicked", "deferred", "bounced", "dropped", "failed",
            "complained", "unsubscribed")
_RANK = {"queued": 0, "deferred": 1, "sent": 1, "delivered": 2, "opened": 3, "clicked": 4, "bounced": 5,
         "dropped": 5, "failed": 5, "complained": 6, "unsubscribed": 6}
SOURCE = "/email"
_HISTORY = ("message_id", "status", "at", "recipient", "provider", "detail")
_NO_DETAIL: dict[str, Any] = {}  # one object for every history row without detail (processed once per flush)


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
    """Collects status changes of one transaction; at `flush()` their history rows and their events each go
    in one multi-row insert (a batch records thousands at once)."""

    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self._history: list[tuple[str, str, datetime, str | None, str | None, dict[str, Any]]] = []
        self._events: list[tuple[str, dict[str, Any], str | None]] = []
        self._times: dict[datetime, str] = {}  # a batch records thousands of changes at the same moment

    def record(self, message: Message, seen: Observation) -> bool:
        """Apply one observation to `message`; True if its summary status moved."""
        previous = message.status
        moved = advances(previous, seen.status)
        if moved:
            message.status, message.status_at = seen.status, seen.at
        self._history.append((message.id, seen.status, seen.at, seen.recipient, seen.provider,
                              seen.detail or _NO_DETAIL))
        self._events.append((
            f"platform.email.events.messages.{seen.status}",
            {"message_id": message.id, "batch_id": message.batch_id, "status": seen.status,
             "previous_status": previous, "current_status": message.status, "recipient": seen.recipient,
             "provider": seen.provider, "tags": list(message.tags or []), "at": self._format(seen.at),
             "detail": seen.detail or {}},
            message.id))
        return moved

    def _format(self, moment: datetime) -> str:
        text = self._times.get(moment)
        if text is None:
            text = self._times[moment] = format_time(moment)
        return text

    async def flush(self) -> None:
        if self._history:
            history, self._history = self._history, []
            writer = RowWriter(self.session, cast(Table, EmailStatusChange.__table__),
                               {"workspace_id": self.workspace_id}, _HISTORY, shared=("at", "detail"))
            for values in history:
                writer.add(values)
            await writer.flush()
        if self._events:
            events, self._events = self._events, []
            await emit_many(self.session, events, source=SOURCE)
