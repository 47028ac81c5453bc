"""EmailService rules: accept a send or a batch (validate, refuse suppressed recipients, idempotency, queue),
then dispatch what is due now; scheduled and retried messages are sent by the worker (`worker.py`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.errors import InvalidRequest, NotFound
from ionflux.core.models import new_id, utcnow
from ionflux.core.platform import Platform
from ionflux.email.addresses import Address, parse_address, parse_addresses
from ionflux.email.bulk import RowWriter
from ionflux.email.compose import (
    check_headers,
    check_send_at,
    check_tags,
    content_of,
    optional_address,
    tag_index,
)
from ionflux.email.dispatch import Dispatcher
from ionflux.email.models import EmailBatch, EmailMessage
from ionflux.email.providers.base import OutboundMessage
from ionflux.email.schemas import BatchRequest, BatchResult, RecipientResult, Refusal, SendRequest, SendResult
from ionflux.email.settings import EmailSettings
from ionflux.email.status import Observation, StatusRecorder, Tracked, aware
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

    # -- one message -------------------------------------------------------------------------------
    async def send(self, workspace_id: str, request: SendRequest) -> SendResult:
        try:
            result = await self._accept(workspace_id, request)
        except IntegrityError:
            if request.idempotency_key is None:
                raise
            async with self.db.tenant(workspace_id) as session:  # a concurrent twin won the key
                replay = await self._replay_message(session, request.idempotency_key)
            if replay is None:
                raise
            return replay
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
        """When the worker takes over a message due now, should the request that queued it die before sending."""
        return now + timedelta(seconds=self.settings.claim_seconds)

    def _expired(self, created_at: datetime) -> bool:
        return aware(created_at) < self.clock() - timedelta(hours=self.settings.idempotency_hours)

    # -- a batch -----------------------------------------------------------------------------------
    async def batch(self, workspace_id: str, request: BatchRequest) -> BatchResult:
        try:
            accepted = await self._accept_batch(workspace_id, request)
        except IntegrityError:
            if request.idempotency_key is None:
                raise
            async with self.db.tenant(workspace_id) as session:
                replay = await self._replay_batch(session, request.idempotency_key)
            if replay is None:
                raise
            return replay
        result, prepared, later = accepted
        if result.idempotent_replay or not prepared:
            return result
        if later:
            self.wake()
            return result
        await self.dispatcher.run(workspace_id, list(prepared), inline=True, prepared=prepared)
        return await self.batch_result(workspace_id, result.batch_id, result)

    async def _accept_batch(self, workspace_id: str, request: BatchRequest
                            ) -> tuple[BatchResult, dict[str, OutboundMessage], bool]:
        """Check, render and queue the batch in one transaction; returns the result so far and the accepted
        messages as the providers take them (dispatch then needs not read back what was just written)."""
        now = self.clock()
        async with self.db.tenant(workspace_id) as session:
            if request.idempotency_key is not None:
                replay = await self._replay_batch(session, request.idempotency_key)
                if replay is not None:
                    return replay, {}, False
            sender = parse_address(request.sender, "from")
            reply_to = optional_address(request.reply_to, "reply_to")
            tags, headers = check_tags(request.tags), check_headers(request.headers)
            send_at = check_send_at(request.send_at, now)
            content = await content_of(session, template_id=request.template_id, subject=request.subject,
                                       text=request.text, html=request.html, marketing=request.marketing)
            template = CompiledTemplate(content.source, skeleton=True)
            batch_id = new_id()
            results: list[RecipientResult] = []
            candidates: list[tuple[int, Address, dict[str, Any]]] = []
            seen: set[str] = set()
            for index, recipient in enumerate(request.recipients):
                try:
                    address = parse_address(recipient.to, f"recipients[{index}].to")
                except InvalidRequest as exc:
                    results.append(RecipientResult(index=index, email=str(recipient.to)[:320], message_id=None,
                                                   status="refused", error=exc.message))
                    continue
                if address.key in seen:
                    results.append(RecipientResult(index=index, email=address.email, message_id=None,
                                                   status="refused", error="duplicate recipient in this batch"))
                    continue
                seen.add(address.key)
                candidates.append((index, address, recipient.template_data))
            blocked = await suppressed_among(session, [a.email for _, a, _ in candidates])
            links = self.links() if content.marketing else None
            due = send_at or self._fallback_time(now)
            rows = RowWriter(session, cast(Table, EmailMessage.__table__), _batch_constants(
                workspace_id, batch_id, sender, reply_to, tags, content.template_id, content.marketing, send_at,
                due, now), _BATCH_VARYING, shared=("headers",))
            prepared: dict[str, OutboundMessage] = {}
            for index, address, data in candidates:
                if address.key in blocked:
                    results.append(RecipientResult(index=index, email=address.email, message_id=None,
                                                   status="refused", error=f"suppressed ({blocked[address.key]})"))
                    continue
                try:
                    rendered = template.render(data)
                except InvalidRequest as exc:
                    results.append(RecipientResult(index=index, email=address.email, message_id=None,
                                                   status="refused", error=exc.message))
                    continue
                message_id = new_id()
                own_headers = headers
                if links is not None:
                    own_headers = {**headers, **links.headers(UnsubscribeClaim(workspace_id, address.email,
                                                                                message_id))}
                to = [address]
                rows.add((message_id, index, [address.to_dict()], rendered.subject,
                          None if template.substitutable else rendered.text,
                          None if template.substitutable else rendered.html, rendered.substitutions, own_headers))
                prepared[message_id] = OutboundMessage(
                    id=message_id, workspace_id=workspace_id, sender=sender, to=to, subject=rendered.subject,
                    text=rendered.text, html=rendered.html, substitutions=rendered.substitutions, reply_to=reply_to,
                    headers=own_headers, tags=tags)
                results.append(RecipientResult.model_construct(index=index, email=address.email,
                                                               message_id=message_id, status="queued", error=None))
            results.sort(key=lambda r: r.index)
            refused = [{"index": r.index, "email": r.email, "error": r.error} for r in results if r.message_id is None]
            session.add(EmailBatch(
                id=batch_id, idempotency_key=request.idempotency_key, template_id=content.template_id,
                text=template.skeleton("text") if template.substitutable else None,
                html=template.skeleton("html") if template.substitutable else None,
                recipients=len(request.recipients), refused=refused, created_at=now))
            await session.flush()
            if prepared:
                await rows.flush()
                recorder = StatusRecorder(session, workspace_id)
                queued = Observation("queued", now)
                for message_id in prepared:
                    recorder.record(Tracked(message_id, batch_id, tags, "queued", now), queued)
                await recorder.flush()
            result = BatchResult(batch_id=batch_id, recipients=len(request.recipients), accepted=len(prepared),
                                 refused=len(refused), results=results)
            return result, prepared, send_at is not None

    async def _replay_batch(self, session: AsyncSession, key: str) -> BatchResult | None:
        row = await session.scalar(select(EmailBatch).where(EmailBatch.idempotency_key == key))
        if row is None:
            return None
        if self._expired(row.created_at):
            row.idempotency_key = None
            await session.flush()
            return None
        result = await self._batch_view(session, row)
        return result.model_copy(update={"idempotent_replay": True})

    async def batch_result(self, workspace_id: str, batch_id: str, base: BatchResult | None = None) -> BatchResult:
        """The batch with each message's current status; given the `base` just accepted, only statuses are read."""
        async with self.db.tenant(workspace_id) as session:
            if base is not None:
                statuses = dict((await session.execute(select(EmailMessage.id, EmailMessage.status).where(
                    EmailMessage.batch_id == batch_id))).all())
                results = [r if r.message_id is None else RecipientResult.model_construct(
                    index=r.index, email=r.email, message_id=r.message_id, status=statuses.get(r.message_id, r.status),
                    error=r.error) for r in base.results]
                return base.model_copy(update={"results": results})
            row = await session.get(EmailBatch, batch_id)
            if row is None:
                raise NotFound(f"no batch {batch_id!r} in this workspace", field="batch_id")
            return await self._batch_view(session, row)

    async def _batch_view(self, session: AsyncSession, batch: EmailBatch) -> BatchResult:
        rows = (await session.execute(select(EmailMessage.batch_index, EmailMessage.id, EmailMessage.to,
                                             EmailMessage.status).where(EmailMessage.batch_id == batch.id))).all()
        results = [RecipientResult(index=r["index"], email=r["email"], message_id=None, status="refused",
                                   error=r["error"]) for r in batch.refused]
        results += [RecipientResult(index=index or 0, email=to[0]["email"], message_id=message_id, status=status)
                    for index, message_id, to, status in rows]
        results.sort(key=lambda r: r.index)
        return BatchResult(batch_id=batch.id, recipients=batch.recipients, accepted=len(rows),
                           refused=len(batch.refused), results=results)


def _without(blocked: dict[str, str]) -> Callable[[list[Address]], list[Address]]:
    return lambda addresses: [a for a in addresses if a.key not in blocked]


_BATCH_VARYING = ("id", "batch_index", "to", "subject", "text", "html", "substitutions", "headers")


def _batch_constants(workspace_id: str, batch_id: str, sender: Address, reply_to: Address | None, tags: list[str],
                     template_id: str | None, marketing: bool, send_at: datetime | None, due: datetime,
                     now: datetime) -> dict[str, Any]:
    """The columns every message of a batch shares (the others are `_BATCH_VARYING`)."""
    return {
        "workspace_id": workspace_id, "batch_id": batch_id, "idempotency_key": None, "sender": sender.to_dict(),
        "cc": [], "bcc": [], "reply_to": reply_to.to_dict() if reply_to else None, "tags": tags,
        "tag_index": tag_index(tags), "template_id": template_id, "marketing": marketing, "refused": [],
        "status": "queued", "status_at": now, "provider": None, "provider_message_id": None, "last_error": None,
        "attempts": 0, "send_at": send_at, "next_attempt_at": due, "claimed_until": None, "created_at": now,
    }
