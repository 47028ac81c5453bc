"""Provider events onto message status: SendGrid Event Webhook batches and SES notifications (via SNS), as
the webhook pipeline publishes them on the bus, plus one-click unsubscribes.

Each provider event counts once: its id (`sg_event_id`; the SNS `MessageId` for SES) is inserted into
`email_provider_events` in the transaction that applies it, so a duplicate in the same batch, a provider
retry or a replayed delivery changes nothing. Events for the platform's shared accounts name their
workspace in our custom args / tags (we set them when sending); events for a workspace's own account are
applied to that workspace only, whatever they claim.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import Event
from ionflux.core.db import Database
from ionflux.core.models import PLATFORM_WORKSPACE, utcnow
from ionflux.core.webhooks.base import parse_time
from ionflux.email.models import EmailMessage, EmailProviderEvent
from ionflux.email.status import Observation, StatusRecorder
from ionflux.email.suppressions import suppress, suppressed_among
from ionflux.email.unsubscribe import UnsubscribeLinks

log = logging.getLogger("ionflux.email.events")
MESSAGE_ARG = "ionflux_message_id"
WORKSPACE_ARG = "ionflux_workspace"
SENDGRID_STATUS = {"delivered": "delivered", "open": "opened", "click": "clicked", "deferred": "deferred",
                   "bounce": "bounced", "dropped": "dropped", "spamreport": "complained",
                   "unsubscribe": "unsubscribed", "group_unsubscribe": "unsubscribed"}
SENDGRID_SUPPRESS = {"spamreport": "complaint", "unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe"}
DETAIL_FIELDS = ("reason", "status", "response", "attempt", "url", "type", "bounce_classification", "useragent")


# An item is (dedupe id, message id or None, provider message id or None, [observations], [suppressions]).
Item = tuple[str, str | None, str | None, list[Observation], list[tuple[str, str, str | None]]]


class ProviderEvents:
    def __init__(self, db: Database, links: Callable[[], UnsubscribeLinks]) -> None:
        self.db = db
        self.links = links

    async def on_sendgrid(self, event: Event, session: AsyncSession) -> None:
        payload = event.data.get("payload") or {}
        raw = payload.get("events") if isinstance(payload, dict) else None
        grouped: dict[str, list[Item]] = defaultdict(list)
        for item in raw if isinstance(raw, list) else []:
            if not isinstance(item, dict) or not item.get("sg_event_id"):
                continue
            workspace = _workspace(event.workspace_id, item.get(WORKSPACE_ARG))
            if workspace is not None:
                grouped[workspace].append(_sendgrid_item(item))
        await self._apply_all(event, session, "sendgrid", grouped)

    async def on_ses(self, event: Event, session: AsyncSession) -> None:
        payload = event.data.get("payload") or {}
        inner = payload.get("Message") if isinstance(payload, dict) else None
        if not isinstance(inner, dict) or not isinstance(inner.get("mail"), dict):
            return
        ids = _ses_ids(inner["mail"])
        workspace = _workspace(event.workspace_id, ids.get(WORKSPACE_ARG))
        if workspace is None:
            return
        item = _ses_item(str(payload.get("MessageId") or event.id), inner, ids.get(MESSAGE_ARG))
        await self._apply_all(event, session, "ses", {workspace: [item]})

    async def _apply_all(self, event: Event, session: AsyncSession, provider: str,
                         grouped: dict[str, list[Item]]) -> None:
        for workspace_id, items in grouped.items():
            if workspace_id == event.workspace_id:
                await apply_items(session, workspace_id, provider, items)
            else:  # the platform's shared account: each workspace's share in its own transaction
                async with self.db.tenant(workspace_id) as own:
                    await apply_items(own, workspace_id, provider, items)

    async def unsubscribe(self, token: str) -> dict[str, Any]:
        claim = self.links().verify(token)
        async with self.db.tenant(claim.workspace_id) as session:
            already = await suppressed_among(session, [claim.email])
            if not already:
                await suppress(session, claim.workspace_id, [(claim.email, "unsubscribe", "List-Unsubscribe",
                                                              claim.message_id)])
                row = await session.get(EmailMessage, claim.message_id) if claim.message_id else None
                if row is not None:
                    recorder = StatusRecorder(session, claim.workspace_id)
                    recorder.record(row, Observation("unsubscribed", utcnow(), claim.email, None,
                                                     {"via": "list-unsubscribe"}))
                    await recorder.flush()
        return {"email": claim.email, "unsubscribed": True}


def _workspace(owner: str, claimed: Any) -> str | None:
    """Whose event this is: the workspace it was published in (the pipeline routed it there, see webhooks.py).

    Events left in the platform's own workspace name no workspace we know: nothing to apply them to."""
    return None if owner == PLATFORM_WORKSPACE else owner


def _at(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return parse_time(value) or utcnow()
    return utcnow()


def _sendgrid_item(item: dict[str, Any]) -> Item:
    kind = str(item.get("event", ""))
    email = str(item.get("email", ""))[:320] or None
    status = SENDGRID_STATUS.get(kind)
    detail = {"event": kind, **{k: item[k] for k in DETAIL_FIELDS if k in item}}
    observations = [Observation(status, _at(item.get("timestamp")), email, "sendgrid", detail)] if status else []
    reason = SENDGRID_SUPPRESS.get(kind)
    if kind == "bounce" and item.get("type", "bounce") == "bounce":  # "blocked" is temporary: no suppression
        reason = "bounce"
    suppressions: list[tuple[str, str, str | None]] = (
        [(email, reason, str(item.get("reason") or kind))] if reason and email else [])
    sg_message_id = str(item.get("sg_message_id") or "").split(".", 1)[0] or None
    message_id = item.get(MESSAGE_ARG)
    return (str(item["sg_event_id"])[:255], message_id if isinstance(message_id, str) else None, sg_message_id,
            observations, suppressions)


def _ses_ids(mail: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    tags = mail.get("tags")
    if isinstance(tags, dict):
        for name in (MESSAGE_ARG, WORKSPACE_ARG):
            value = tags.get(name)
            if isinstance(value, list) and value:
                found[name] = str(value[0])
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and isinstance(header.get("name"), str):
            name = header["name"].lower().replace("x-ionflux-", "ionflux_").replace("-", "_")
            if name in (MESSAGE_ARG, WORKSPACE_ARG) and name not in found:
                found[name] = str(header.get("value", ""))
    return found


def _ses_item(dedupe: str, inner: dict[str, Any], message_id: str | None) -> Item:
    kind = str(inner.get("notificationType") or inner.get("eventType") or "")
    mail = inner["mail"]
    observations: list[Observation] = []
    suppressions: list[tuple[str, str, str | None]] = []
    if kind == "Bounce" and isinstance(inner.get("bounce"), dict):
        bounce = inner["bounce"]
        permanent = bounce.get("bounceType") == "Permanent"
        for r in bounce.get("bouncedRecipients") or []:
            email, diag = str(r.get("emailAddress", "")), r.get("diagnosticCode")
            detail = {"bounce_type": bounce.get("bounceType"), "bounce_subtype": bounce.get("bounceSubType"),
                      "diagnostic": diag}
            observations.append(Observation("bounced", _at(bounce.get("timestamp")), email, "ses", detail))
            if permanent and email:
                suppressions.append((email, "bounce", str(diag or bounce.get("bounceSubType") or "Permanent")))
    elif kind == "Complaint" and isinstance(inner.get("complaint"), dict):
        complaint = inner["complaint"]
        for r in complaint.get("complainedRecipients") or []:
            email = str(r.get("emailAddress", ""))
            observations.append(Observation("complained", _at(complaint.get("timestamp")), email, "ses",
                                            {"feedback_type": complaint.get("complaintFeedbackType")}))
            if email:
                suppressions.append((email, "complaint", str(complaint.get("complaintFeedbackType") or "complaint")))
    elif kind == "Delivery" and isinstance(inner.get("delivery"), dict):
        delivery = inner["delivery"]
        for email in delivery.get("recipients") or []:
            observations.append(Observation("delivered", _at(delivery.get("timestamp")), str(email), "ses",
                                            {"smtp_response": delivery.get("smtpResponse")}))
    else:
        status = {"Open": "opened", "Click": "clicked", "DeliveryDelay": "deferred", "Reject": "dropped"}.get(kind)
        if status:
            observations.append(Observation(status, _at(mail.get("timestamp")), None, "ses", {"event": kind}))
    return dedupe[:255], message_id, str(mail.get("messageId") or "") or None, observations, suppressions


async def apply_items(session: AsyncSession, workspace_id: str, provider: str, items: list[Item]) -> int:
    """Apply the items not applied before; returns how many were new."""
    seen = set((await session.scalars(select(EmailProviderEvent.event_id).where(
        EmailProviderEvent.provider == provider, EmailProviderEvent.event_id.in_([i[0] for i in items])))).all())
    fresh: list[Item] = []
    for item in items:
        if item[0] not in seen:
            seen.add(item[0])
            fresh.append(item)
    if not fresh:
        return 0
    by_id = {m.id: m for m in (await session.scalars(select(EmailMessage).where(
        EmailMessage.id.in_({i[1] for i in fresh if i[1]})))).all()}
    by_provider_id: dict[str, list[EmailMessage]] = defaultdict(list)
    wanted = {i[2] for i in fresh if i[1] not in by_id and i[2]}
    if wanted:
        for m in (await session.scalars(select(EmailMessage).where(
                EmailMessage.provider_message_id.in_(wanted)))).all():
            by_provider_id[m.provider_message_id or ""].append(m)
    recorder = StatusRecorder(session, workspace_id)
    marks: list[dict[str, Any]] = []
    for dedupe, message_id, provider_id, observations, suppressions in fresh:
        message = by_id.get(message_id or "") or _match(by_provider_id.get(provider_id or "", []), observations)
        for seen_now in observations:
            if message is not None:
                recorder.record(message, seen_now)
        if suppressions:
            await suppress(session, workspace_id, [(e, r, d, message.id if message else None)
                                                   for e, r, d in suppressions])
        if message is None:
            log.info("provider event for an unknown message", extra={"provider": provider, "event_id": dedupe})
        marks.append({"workspace_id": workspace_id, "provider": provider, "event_id": dedupe,
                      "message_id": message.id if message else None, "received_at": utcnow()})
    await session.execute(insert(EmailProviderEvent), marks)  # a concurrent twin fails here and is retried
    await recorder.flush()
    return len(fresh)


def _match(candidates: list[EmailMessage], observations: list[Observation]) -> EmailMessage | None:
    """A provider message id shared by a request's messages (SendGrid X-Message-Id): pick by recipient."""
    if len(candidates) <= 1:
        return candidates[0] if candidates else None
    recipients = {o.recipient.lower() for o in observations if o.recipient}
    for candidate in candidates:
        if any(str(a.get("email", "")).lower() in recipients for a in candidate.to + candidate.cc + candidate.bcc):
            return candidate
    return None
