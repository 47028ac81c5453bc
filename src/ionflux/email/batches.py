"""Batches: one template or content for up to 10,000 recipients, each with its own data.

Accepting a batch is one transaction: every recipient is checked (address, duplicate, suppression, rendering)
and refused or queued, and the queued messages' rows, `queued` history and events are written in bulk, so the
answer never names a message that a crash could lose. Then the request dispatches them itself, from the
messages it built (nothing is read back); should it die first, the worker sends them once their fallback time
has come. Per-recipient results stay plain tuples until the answer is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bulk import RowWriter
from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest, NotFound
from ionflux.core.models import new_id
from ionflux.email.addresses import Address, parse_address
from ionflux.email.compose import (
    check_headers,
    check_send_at,
    check_tags,
    content_of,
    fallback_time,
    idempotency_expired,
    optional_address,
    tag_index,
)
from ionflux.email.dispatch import Dispatcher
from ionflux.email.idempotency import accept_once
from ionflux.email.models import EmailBatch, EmailMessage
from ionflux.email.providers.base import OutboundMessage
from ionflux.email.schemas import BatchRequest, BatchResult, RecipientResult
from ionflux.email.settings import EmailSettings
from ionflux.email.status import Observation, StatusRecorder, Tracked
from ionflux.email.suppressions import suppressed_among
from ionflux.email.templates import CompiledTemplate, Rendered
from ionflux.email.unsubscribe import UnsubscribeClaim, UnsubscribeLinks

Outcome = tuple[int, str, str | None, str, str | None]  # index, email, message id, status, error
_VARYING = ("id", "batch_index", "to", "subject", "text", "html", "substitutions", "headers")


class Prepared(Mapping[str, OutboundMessage]):
    """A batch's queued messages as the providers take them, kept as plain values (strings and string dicts,
    which the garbage collector does not track) and built when dispatch claims them, a chunk at a time."""

    def __init__(self, workspace_id: str, sender: Address, reply_to: Address | None, tags: list[str]) -> None:
        self.workspace_id, self.sender, self.reply_to, self.tags = workspace_id, sender, reply_to, tags
        self._messages: dict[str, tuple[str, str | None, str, str | None, str | None, dict[str, str],
                                        dict[str, str]]] = {}

    def add(self, message_id: str, to: Address, rendered: Rendered, headers: dict[str, str]) -> None:
        self._messages[message_id] = (to.email, to.name, rendered.subject, rendered.text, rendered.html,
                                      rendered.substitutions, headers)

    def __getitem__(self, message_id: str) -> OutboundMessage:
        email, name, subject, text, html, substitutions, headers = self._messages[message_id]
        return OutboundMessage(id=message_id, workspace_id=self.workspace_id, sender=self.sender,
                               to=[Address(email, name)], subject=subject, text=text, html=html,
                               substitutions=substitutions, reply_to=self.reply_to, headers=headers, tags=self.tags)

    def __iter__(self) -> Iterator[str]:
        return iter(self._messages)

    def __len__(self) -> int:
        return len(self._messages)


@dataclass
class _Queued:
    """A batch just accepted: its per-recipient outcomes and its queued messages, ready for the providers."""

    batch_id: str
    recipients: int
    outcomes: list[Outcome]
    prepared: Prepared
    later: bool  # scheduled: the worker sends it

    def result(self, statuses: Mapping[str, str] | None = None) -> BatchResult:
        statuses = statuses or {}
        results = [RecipientResult.model_construct(
            index=index, email=email, message_id=message_id,
            status=statuses.get(message_id, status) if message_id else status, error=error)
            for index, email, message_id, status, error in self.outcomes]
        return BatchResult(batch_id=self.batch_id, recipients=self.recipients, accepted=len(self.prepared),
                           refused=len(self.outcomes) - len(self.prepared), results=results)


class BatchSender:
    def __init__(self, db: Database, settings: EmailSettings, dispatcher: Dispatcher,
                 links: Callable[[], UnsubscribeLinks], *, clock: Callable[[], datetime],
                 wake: Callable[[], None]) -> None:
        self.db = db
        self.settings = settings
        self.dispatcher = dispatcher
        self.links = links
        self.clock = clock
        self.wake = wake

    async def batch(self, workspace_id: str, request: BatchRequest) -> BatchResult:
        accepted = await accept_once(self.db, workspace_id, request.idempotency_key,
                                     lambda: self._accept(workspace_id, request), self._replay)
        if isinstance(accepted, BatchResult):  # an idempotent replay
            return accepted
        if accepted.later or not accepted.prepared:
            if accepted.prepared:
                self.wake()  # scheduled: the worker sends it when due
            return accepted.result()
        report = await self.dispatcher.run(workspace_id, list(accepted.prepared), inline=True,
                                           prepared=accepted.prepared)
        return accepted.result(report.statuses)

    async def _accept(self, workspace_id: str, request: BatchRequest) -> BatchResult | _Queued:
        """Check, render and queue the batch in one transaction (an idempotent replay: the first result)."""
        now = self.clock()
        async with self.db.tenant(workspace_id) as session:
            if request.idempotency_key is not None:
                replay = await self._replay(session, request.idempotency_key)
                if replay is not None:
                    return replay
            sender = parse_address(request.sender, "from")
            reply_to = optional_address(request.reply_to, "reply_to")
            tags, headers = check_tags(request.tags), check_headers(request.headers)
            send_at = check_send_at(request.send_at, now)
            content = await content_of(session, template_id=request.template_id, subject=request.subject,
                                       text=request.text, html=request.html, marketing=request.marketing)
            template = CompiledTemplate(content.source, skeleton=True)
            batch_id = new_id()
            outcomes: list[Outcome] = []
            candidates: list[tuple[int, str, str | None, dict[str, Any]]] = []  # index, address, name, data
            seen: set[str] = set()
            for index, recipient in enumerate(request.recipients):
                try:
                    address = parse_address(recipient["to"], f"recipients[{index}].to")
                except InvalidRequest as exc:
                    outcomes.append((index, str(recipient["to"])[:320], None, "refused", exc.message))
                    continue
                if address.key in seen:
                    outcomes.append((index, address.email, None, "refused", "duplicate recipient in this batch"))
                    continue
                seen.add(address.key)
                candidates.append((index, address.email, address.name, recipient.get("template_data", {})))
            blocked = await suppressed_among(session, [email for _, email, _, _ in candidates])
            links = self.links() if content.marketing else None
            rows = RowWriter(session, cast(Table, EmailMessage.__table__), _constants(
                workspace_id, batch_id, sender, reply_to, tags, content.template_id, content.marketing, send_at,
                send_at or fallback_time(self.settings, now), now), _VARYING, shared=("headers",))
            prepared = Prepared(workspace_id, sender, reply_to, tags)
            for index, email, name, data in candidates:
                address = Address(email, name)
                if address.key in blocked:
                    outcomes.append((index, address.email, None, "refused", f"suppressed ({blocked[address.key]})"))
                    continue
                try:
                    rendered = template.render(data)
                except InvalidRequest as exc:
                    outcomes.append((index, address.email, None, "refused", exc.message))
                    continue
                message_id = new_id()
                own_headers = headers
                if links is not None:
                    own_headers = {**headers, **links.headers(UnsubscribeClaim(workspace_id, address.email,
                                                                                message_id))}
                rows.add((message_id, index, [address.to_dict()], rendered.subject,
                          None if template.substitutable else rendered.text,
                          None if template.substitutable else rendered.html, rendered.substitutions, own_headers))
                prepared.add(message_id, address, rendered, own_headers)
                outcomes.append((index, address.email, message_id, "queued", None))
            outcomes.sort()
            session.add(EmailBatch(
                id=batch_id, idempotency_key=request.idempotency_key, template_id=content.template_id,
                text=template.skeleton("text") if template.substitutable else None,
                html=template.skeleton("html") if template.substitutable else None,
                recipients=len(request.recipients),
                refused=[{"index": i, "email": e, "error": error} for i, e, m, _, error in outcomes if m is None],
                created_at=now))
            await session.flush()
            if prepared:
                await rows.flush()
                recorder = StatusRecorder(session, workspace_id)
                queued = Observation("queued", now)
                for message_id in prepared:
                    recorder.record(Tracked(message_id, batch_id, tags, "queued", now), queued)
                await recorder.flush()
            return _Queued(batch_id, len(request.recipients), outcomes, prepared, later=send_at is not None)

    async def _replay(self, session: AsyncSession, key: str) -> BatchResult | None:
        row = await session.scalar(select(EmailBatch).where(EmailBatch.idempotency_key == key))
        if row is None:
            return None
        if idempotency_expired(self.settings, row.created_at, self.clock()):
            row.idempotency_key = None  # older than the window: the key is free again
            await session.flush()
            return None
        result = await self._view(session, row)
        return result.model_copy(update={"idempotent_replay": True})

    async def result(self, workspace_id: str, batch_id: str) -> BatchResult:
        """The batch with each recipient's outcome and each message's current status."""
        async with self.db.tenant(workspace_id) as session:
            row = await session.get(EmailBatch, batch_id)
            if row is None:
                raise NotFound(f"no batch {batch_id!r} in this workspace", field="batch_id")
            return await self._view(session, row)

    async def _view(self, session: AsyncSession, batch: EmailBatch) -> BatchResult:
        rows = (await session.execute(select(EmailMessage.batch_index, EmailMessage.id, EmailMessage.to,
                                             EmailMessage.status).where(EmailMessage.batch_id == batch.id))).all()
        results = [RecipientResult(index=r["index"], email=r["email"], message_id=None, status="refused",
                                   error=r["error"]) for r in batch.refused]
        results += [RecipientResult(index=index or 0, email=to[0]["email"], message_id=message_id, status=status)
                    for index, message_id, to, status in rows]
        results.sort(key=lambda r: r.index)
        return BatchResult(batch_id=batch.id, recipients=batch.recipients, accepted=len(rows),
                           refused=len(batch.refused), results=results)


def _constants(workspace_id: str, batch_id: str, sender: Address, reply_to: Address | None, tags: list[str],
               template_id: str | None, marketing: bool, send_at: datetime | None, due: datetime,
               now: datetime) -> dict[str, Any]:
    """The columns every message of a batch shares (the others are `_VARYING`)."""
    return {
        "workspace_id": workspace_id, "batch_id": batch_id, "idempotency_key": None, "sender": sender.to_dict(),
        "cc": [], "bcc": [], "reply_to": reply_to.to_dict() if reply_to else None, "tags": tags,
        "tag_index": tag_index(tags), "template_id": template_id, "marketing": marketing, "refused": [],
        "status": "queued", "status_at": now, "provider": None, "provider_message_id": None, "last_error": None,
        "attempts": 0, "send_at": send_at, "next_attempt_at": due, "claimed_until": None, "created_at": now,
    }
