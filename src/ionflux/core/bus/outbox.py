"""`emit`: write an event into the caller's transaction, so it commits or rolls back with the change.

A session that emitted is flagged in `session.info`; when it commits, every relay running on the same
engine is nudged at once (`after_commit`), so delivery does not wait for the next poll.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, select
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

from ionflux.core.bulk import RowWriter
from ionflux.core.bus.envelope import Event, validate_topic
from ionflux.core.bus.patterns import compile_pattern
from ionflux.core.db import SYSTEM, TenancyViolation, scope_of
from ionflux.core.errors import InvalidRequest
from ionflux.core.models import OutboxEvent, utcnow

log = logging.getLogger(__name__)

_EMITTED = "ionflux_bus_emitted"
_MAX_SOURCE = 255
Waker = Callable[[], None]
_wakers: weakref.WeakKeyDictionary[Engine, dict[int, Waker]] = weakref.WeakKeyDictionary()


def emit(
    session: AsyncSession,
    *,
    type: str,  # the CloudEvents attribute is called `type`
    data: dict[str, Any],
    subject: str | None = None,
    source: str = "ionflux",
    workspace_id: str | None = None,
) -> Event:
    """Add an event to the outbox in `session`'s transaction and return it (it is sent after commit).

    In a `db.tenant(ws)` session the event belongs to `ws`; a `db.system()` session must name the
    workspace. The caller commits (the `db.tenant()`/`db.system()` block does it on exit).
    """
    event = _checked(session, type, data, subject, source, workspace_id)
    session.add(OutboxEvent(**_row(event)))
    session.sync_session.info[_EMITTED] = True
    return event


async def emit_many(
    session: AsyncSession,
    events: Iterable[tuple[str, dict[str, Any], str | None]],
    *,
    source: str = "ionflux",
    workspace_id: str | None = None,
) -> list[Event]:
    """`emit` for many `(type, data, subject)` at once (a transaction that records thousands of changes):
    the same checks, with the scope checked once and each topic once, and rows written by one driver
    executemany (`RowWriter`). The events share one time, the moment they are emitted."""
    items = list(events)
    if not items:
        return []
    scope_checked = _checked(session, items[0][0], items[0][1], items[0][2], source, workspace_id)
    workspace, now = scope_checked.workspace_id, utcnow()
    table = cast(Table, OutboxEvent.__table__)
    writer = RowWriter(session, table, {"source": source, "workspace_id": workspace, "time": now,
                                        "next_attempt_at": now, "status": "pending", "attempts": 0},
                       ("id", "type", "subject", "data"))
    topics: set[str] = set()
    made = []
    for type, data, subject in items:
        if type not in topics:
            validate_topic(type)
            topics.add(type)
        _validated_data(data, subject)
        event = Event(type=type, data=data, subject=subject, source=source, workspace_id=workspace, time=now)
        writer.add((event.id, type, subject, data))
        made.append(event)
    await writer.flush()
    session.sync_session.info[_EMITTED] = True
    return made


def outbox_row(*, type: str, data: dict[str, Any], workspace_id: str, subject: str | None = None,
               source: str = "ionflux") -> tuple[Event, dict[str, Any]]:
    """An event and its outbox row, with `emit`'s checks, for machinery that writes the row itself in its
    own transaction (the webhook inbox's store); tenancy is then the caller's to guarantee."""
    _validated(type, data, subject, source)
    event = Event(type=type, data=data, subject=subject, source=source, workspace_id=workspace_id)
    return event, {**_row(event), "status": "pending", "attempts": 0}


def _checked(session: AsyncSession, type: str, data: dict[str, Any], subject: str | None, source: str,
             workspace_id: str | None) -> Event:
    _validated(type, data, subject, source)
    scope = scope_of(session)
    if scope is None:
        raise TenancyViolation("emit() needs a db.tenant() or db.system() session")
    if workspace_id is None:
        if scope is SYSTEM:
            raise TenancyViolation("emit() in a system session must name the workspace_id")
        workspace_id = str(scope)
    elif scope is not SYSTEM and workspace_id != scope:
        raise TenancyViolation("emit() cannot write an event of another workspace in a tenant session")
    return Event(type=type, data=data, subject=subject, source=source, workspace_id=workspace_id)


def _validated(type: str, data: dict[str, Any], subject: str | None, source: str) -> None:
    validate_topic(type)
    if not source or len(source) > _MAX_SOURCE:
        raise InvalidRequest("event source must be 1-255 characters", field="source")
    _validated_data(data, subject)


def _validated_data(data: dict[str, Any], subject: str | None) -> None:
    if not isinstance(data, dict):
        raise InvalidRequest("event data must be a JSON object", field="data")
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"event data is not JSON-serialisable: {exc}", field="data") from None
    if subject is not None and (not isinstance(subject, str) or len(subject) > 255):
        raise InvalidRequest("event subject must be a string of at most 255 characters", field="subject")


def _row(event: Event) -> dict[str, Any]:
    return {"id": event.id, "type": event.type, "source": event.source, "subject": event.subject,
            "time": event.time, "data": event.data, "workspace_id": event.workspace_id,
            "next_attempt_at": event.time}


def on_commit_wake(engine: AsyncEngine, waker: Waker) -> Callable[[], None]:
    """Call `waker` after every commit, on `engine`, of a session that emitted. Returns an unregister."""
    sync_engine = engine.sync_engine
    key = id(waker)
    _wakers.setdefault(sync_engine, {})[key] = waker

    def unregister() -> None:
        _wakers.get(sync_engine, {}).pop(key, None)

    return unregister


@sa_event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    if not session.info.pop(_EMITTED, False):
        return
    bind = session.bind
    engine = bind if isinstance(bind, Engine) else getattr(bind, "engine", None)
    if engine is None:
        return
    for waker in list(_wakers.get(engine, {}).values()):
        try:
            waker()
        except Exception:  # a wake is only a hint; the poll still finds the rows
            log.exception("outbox wake-up failed")


@sa_event.listens_for(Session, "after_rollback")
def _forget_emitted(session: Session) -> None:
    session.info.pop(_EMITTED, None)


async def list_events(
    session: AsyncSession, *, pattern: str | None = None, after: str | None = None, limit: int = 100
) -> tuple[list[Event], str | None]:
    """Events visible to `session` (a tenant session: its workspace's), oldest first, after event `after`.

    Returns the page and the id to pass as `after` for the next one (None when there is no more).
    Topic patterns are narrowed in SQL by their literal prefix/suffix and matched exactly in Python.
    """
    matcher = compile_pattern(pattern) if pattern else None
    cursor = 0
    if after is not None:
        seq = await session.scalar(select(OutboxEvent.seq).where(OutboxEvent.id == after))
        if seq is None:
            raise InvalidRequest(f"after: no event {after!r} in this workspace", field="after")
        cursor = seq
    query = select(OutboxEvent).order_by(OutboxEvent.seq)
    if pattern:
        query = query.where(*_narrowing(pattern))
    chunk = min(max(limit + 1, 100), 1000)
    matched: list[OutboxEvent] = []
    while len(matched) <= limit:
        rows = (await session.scalars(query.where(OutboxEvent.seq > cursor).limit(chunk))).all()
        for row in rows:
            cursor = row.seq
            if matcher is None or matcher.matches(row.type):
                matched.append(row)
                if len(matched) > limit:
                    break
        if len(rows) < chunk:
            break
    page = [Event.from_row(row) for row in matched[:limit]]
    return page, (page[-1].id if len(matched) > limit and page else None)


def _narrowing(pattern: str) -> list[ColumnElement[bool]]:
    words = pattern.split(".")
    if "*" not in words and "#" not in words:
        return [OutboxEvent.type == pattern]
    first = min(words.index(w) for w in ("*", "#") if w in words)
    last = max(len(words) - 1 - words[::-1].index(w) for w in ("*", "#") if w in words)
    prefix, suffix = ".".join(words[:first]), ".".join(words[last + 1 :])
    like = (_like_escape(prefix + ".") if prefix else "") + "%" + (_like_escape("." + suffix) if suffix else "")
    return [] if like == "%" else [OutboxEvent.type.like(like, escape="\\")]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
