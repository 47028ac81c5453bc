"""EmailService rules: accept a send or a batch (validate, refuse suppressed recipients, idempotency, queue),
then dispatch what is due now; scheduled and retried messages are sent by the worker (`worker.py`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.errors import InvalidRequest
from ionflux.core.models import new_id, utcnow
from ionflux.core.platform import Platform
from ionflux.email.addresses import Address, parse_address, parse_addresses
from ionflux.email.batches import BatchSender
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
from ionflux.email.models import EmailMessage
from ionflux.email.schemas import BatchRequest, BatchResult, Refusal, SendRequest, SendResult
from ionflux.email.settings import EmailSettings
from ionflux.email.status import Observation, StatusRecorder
from ionflux.email.suppressions import suppressed_among
from ionflux.email.templates import CompiledTemplate
from ionflux.email.unsubscribe import UnsubscribeClaim, UnsubscribeLinks

MAX_RECIPIENTS = 50  # per message: SES's limit, the strictest of the three providers


class EmailService:
    def __init__(self, platform: Platform, settings: EmailSettings, dispatcher: Dispatcher,
                 links: Callable[[], UnsubscribeLinks], *, clock: Callable[[], datetime] = utcnow,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.db = platform.db
        self.settings = settings
        self.dispatcher = dispatcher
        self.links = links
        self.clock = clock
        self.wake = wake  # nudges the worker when something was scheduled
        self.batches = BatchSender(platform.db, settings, dispatcher, links, clock=clock, wake=wake)

    # -- one message -------------------------------------------------------------------------------
    async def send(self, workspace_id: str, request: SendRequest) -> SendResult:
        result = await accept_once(self.db, workspace_id, request.idempotency_key,
                                   lambda: self._accept(workspace_id, request), self._replay_message)
        if result.idempotent_replay or result.status != "queued":
            return result
        if self._due_now(request.send_at):
            await self.dispatcher.run(workspace_id, [result.message_id], inline=True)
            async with self.db.tenant(workspace_id) as session:
                row = await session.get(EmailMessage, result.message_id)
                assert row is not None
                result = result.model_copy(update={"status": row.status, "provider": row.provider})
        else:
            self.wake()
        return result

    def _due_now(self, send_at: datetime | None) -> bool:
        return check_send_at(send_at, self.clock()) is None

    async def _accept(self, workspace_id: str, request: SendRequest) -> SendResult:
        now = self.clock()
        async with self.db.tenant(workspace_id) as session:
            if request.idempotency_key is not None:
                replay = await self._replay_message(session, request.idempotency_key)
                if replay is not None:
                    return replay
            sender = parse_address(request.sender, "from")
            to = parse_addresses(request.to, "to", limit=MAX_RECIPIENTS)
            if not to:
                raise InvalidRequest("to: at least one recipient", field="to")
            cc = parse_addresses(request.cc, "cc", limit=MAX_RECIPIENTS)
            bcc = parse_addresses(request.bcc, "bcc", limit=MAX_RECIPIENTS)
            if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
                raise InvalidRequest(f"to/cc/bcc: at most {MAX_RECIPIENTS} recipients in all", field="to")
            reply_to = optional_address(request.reply_to, "reply_to")
            tags, headers = check_tags(request.tags), check_headers(request.headers)
            send_at = check_send_at(request.send_at, now)
            content = await content_of(session, template_id=request.template_id, subject=request.subject,
                                       text=request.text, html=request.html, marketing=request.marketing)
            if content.template_id is not None:
                rendered = CompiledTemplate(content.source, skeleton=False).render(request.template_data)
                subject, text, html = rendered.subject, rendered.text, rendered.html
            else:
                subject, text, html = content.source.subject, content.source.text, content.source.html

            blocked = await suppressed_among(session, [a.email for a in (*to, *cc, *bcc)])
            refused = [Refusal(email=a.email, reason=f"suppressed ({blocked[a.key]})")
                       for a in (*to, *cc, *bcc) if a.key in blocked]
            keep = _without(blocked)
            to, cc, bcc = keep(to), keep(cc), keep(bcc)
            message_id = new_id()
            if content.marketing and to:
                headers = {**headers, **self.links().headers(UnsubscribeClaim(workspace_id, to[0].email, message_id))}
            row = EmailMessage(
                id=message_id, idempotency_key=request.idempotency_key, sender=sender.to_dict(),
                to=[a.to_dict() for a in to], cc=[a.to_dict() for a in cc], bcc=[a.to_dict() for a in bcc],
                reply_to=reply_to.to_dict() if reply_to else None, subject=subject, text=text, html=html,
                headers=headers, tags=tags, tag_index=tag_index(tags), template_id=content.template_id,
                marketing=content.marketing, refused=[r.model_dump() for r in refused], send_at=send_at,
                next_attempt_at=send_at or self._fallback_time(now), status="queued", status_at=now, created_at=now,
            )
            session.add(row)
            recorder = StatusRecorder(session, workspace_id)
            if to:
                recorder.record(row, Observation("queued", now))
            else:  # nobody left to send to: reported, never silently dropped
                row.next_attempt_at = None
                recorder.record(row, Observation("dropped", now, detail={"reason": "every recipient is suppressed",
                                                                         "refused": [r.email for r in refused]}))
            await session.flush()
            await recorder.flush()
            return SendResult(message_id=message_id, status=row.status, refused=refused)

    async def _replay_message(self, session: AsyncSession, key: str) -> SendResult | None:
        row = await session.scalar(select(EmailMessage).where(EmailMessage.idempotency_key == key))
        if row is None:
            return None
        if self._expired(row.created_at):
            row.idempotency_key = None  # older than the window: the key is free again
            await session.flush()
            return None
        return SendResult(message_id=row.id, status=row.status, provider=row.provider,
                          refused=[Refusal(**r) for r in row.refused], idempotent_replay=True)

    def _fallback_time(self, now: datetime) -> datetime:
        return fallback_time(self.settings, now)

    def _expired(self, created_at: datetime) -> bool:
        return idempotency_expired(self.settings, created_at, self.clock())

    # -- a batch (batches.py) ------------------------------------------------------------------------
    async def batch(self, workspace_id: str, request: BatchRequest) -> BatchResult:
        return await self.batches.batch(workspace_id, request)

    async def batch_result(self, workspace_id: str, batch_id: str) -> BatchResult:
        return await self.batches.result(workspace_id, batch_id)


def _without(blocked: dict[str, str]) -> Callable[[list[Address]], list[Address]]:
    return lambda addresses: [a for a in addresses if a.key not in blocked]
