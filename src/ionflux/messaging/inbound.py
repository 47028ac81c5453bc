"""What WhatsApp tells us (through the shared webhook pipeline's `platform.whatsapp.events.*.changed`):
inbound messages, message statuses and template status updates, each acted on once per Meta id.

The pipeline dedupes whole deliveries by their bytes; Meta may also resend one message or status inside a
different delivery, so messages are deduped by wamid and statuses by (wamid, status) here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus import Event
from ionflux.core.bus.outbox import emit
from ionflux.core.models import Connection
from ionflux.messaging import consent
from ionflux.messaging.consent import Keywords
from ionflux.messaging.models import WaContact, WaInbound, WaMessage, WaStatus, WaTemplate
from ionflux.messaging.service import apply_status, aware

log = logging.getLogger(__name__)
SOURCE = "ionflux.messaging"
RECEIVED = "platform.whatsapp.events.messages.received"
STATUS = "platform.whatsapp.events.messages.status"
TEMPLATE_STATUS = "platform.whatsapp.events.templates.status"
MEDIA = ("image", "audio", "video", "document", "sticker")


def _when(stamp: Any) -> datetime | None:
    text = str(stamp or "")
    return datetime.fromtimestamp(int(text), UTC) if text.isdigit() and len(text) <= 12 else None


def keyword_text(message: dict[str, Any]) -> str | None:
    """The words a user sent: a text body, a quick-reply button's text, or a tapped reply's title."""
    kind = message.get("type")
    if kind == "text":
        return (message.get("text") or {}).get("body")
    if kind == "button":
        return (message.get("button") or {}).get("text")
    if kind == "interactive":
        inter = message.get("interactive") or {}
        reply = inter.get("button_reply") or inter.get("list_reply") or {}
        return reply.get("title")
    return None


class InboundHandler:
    def __init__(self, keywords: Keywords) -> None:
        self.keywords = keywords

    async def handle(self, event: Event, session: AsyncSession) -> None:
        connection = await session.get(Connection, str(event.data.get("connection_id", "")))
        if connection is None or (connection.meta or {}).get("kind") not in ("number", "waba"):
            return  # not a number connected through /v1/whatsapp/numbers: nothing of ours
        payload = event.data.get("payload")
        entries = payload.get("entry") if isinstance(payload, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
                value = change.get("value") if isinstance(change, dict) else None
                if not isinstance(value, dict):
                    continue
                field = change.get("field")
                if field == "messages":
                    await self._messages(session, value)
                elif field == "message_template_status_update":
                    await self._template_status(session, str(entry.get("id", "")), value)

    async def _messages(self, session: AsyncSession, value: dict[str, Any]) -> None:
        metadata = value.get("metadata") or {}
        number = str(metadata.get("phone_number_id", ""))
        contacts = {str(c.get("wa_id")): c for c in value.get("contacts") or [] if isinstance(c, dict)}
        for message in value.get("messages") or []:
            if isinstance(message, dict) and message.get("id") and message.get("from"):
                await self._message(session, number, metadata, message, contacts.get(str(message["from"])) or {})
        for status in value.get("statuses") or []:
            if isinstance(status, dict) and status.get("id") and status.get("status"):
                await self._status(session, number, status)

    async def _message(self, session: AsyncSession, number: str, metadata: dict[str, Any],
                       message: dict[str, Any], contact_info: dict[str, Any]) -> None:
        wamid, wa_id = str(message["id"]), str(message["from"])
        profile_name = (contact_info.get("profile") or {}).get("name")
        if await session.scalar(select(WaInbound.id).where(WaInbound.wamid == wamid)) is not None:
            return  # seen in an earlier delivery
        at = _when(message.get("timestamp")) or datetime.now(UTC)
        kind = str(message.get("type", "unknown"))
        session.add(WaInbound(wamid=wamid, phone_number_id=number, wa_id=wa_id, type=kind, sent_at=at,
                              payload=message))
        contact = await session.scalar(select(WaContact).where(
            WaContact.phone_number_id == number, WaContact.wa_id == wa_id))
        if contact is None:
            contact = WaContact(phone_number_id=number, wa_id=wa_id)
            session.add(contact)
        if contact.last_inbound_at is None or aware(contact.last_inbound_at) < at:
            contact.last_inbound_at = at  # every user message opens or refreshes the 24-hour window
        contact.profile_name = profile_name or contact.profile_name
        change = self.keywords.classify(keyword_text(message))
        if change == "stop":
            await consent.record(session, wa_id, "opted_out", source="keyword", at=at,
                                 keyword=keyword_text(message))
        elif change == "start":
            await consent.record(session, wa_id, "opted_in", source="keyword", at=at, keyword=keyword_text(message),
                                 text_shown=f"The user sent {keyword_text(message)!r} to "
                                            f"{metadata.get('display_phone_number') or number}")
        data: dict[str, Any] = {
            "channel": "whatsapp", "phone_number_id": number,
            "display_phone_number": metadata.get("display_phone_number"), "from": wa_id,
            "profile_name": profile_name, "user_id": contact_info.get("user_id"), "wamid": wamid, "type": kind,
            "timestamp": at.isoformat(),
            "text": keyword_text(message), "context": message.get("context"),
            "media": {k: message[k] for k in MEDIA if isinstance(message.get(k), dict)} or None,
            "interactive": message.get("interactive"), "errors": message.get("errors"),
            "consent": {"stop": "opted_out", "start": "opted_in"}.get(change or ""), "message": message,
        }
        emit(session, type=RECEIVED, data=data, subject=wa_id, source=SOURCE)

    async def _status(self, session: AsyncSession, number: str, status: dict[str, Any]) -> None:
        wamid, name = str(status["id"]), str(status["status"])
        if await session.scalar(select(WaStatus.id).where(WaStatus.wamid == wamid, WaStatus.status == name)):
            return
        at = _when(status.get("timestamp")) or datetime.now(UTC)
        errors = status.get("errors") if isinstance(status.get("errors"), list) else None
        session.add(WaStatus(wamid=wamid, status=name, at=at, recipient_id=status.get("recipient_id"),
                             errors=errors))
        message = await session.scalar(select(WaMessage).where(WaMessage.wamid == wamid))
        current = None
        if message is not None:
            apply_status(message, name, at, errors)
            current = message.status
        emit(session, type=STATUS, subject=wamid, source=SOURCE, data={
            "channel": "whatsapp", "phone_number_id": number, "wamid": wamid,
            "message_id": message.id if message is not None else None, "status": name,
            "current_status": current, "timestamp": at.isoformat(), "recipient_id": status.get("recipient_id"),
            "errors": errors, "conversation": status.get("conversation"), "pricing": status.get("pricing"),
        })

    async def _template_status(self, session: AsyncSession, waba_id: str, value: dict[str, Any]) -> None:
        new_status = str(value.get("event") or "").upper()
        template_id = str(value.get("message_template_id") or "")
        name, language = value.get("message_template_name"), value.get("message_template_language")
        if not new_status:
            return
        where = [WaTemplate.meta_id == template_id] if template_id else [
            WaTemplate.name == name, WaTemplate.language == language]
        await session.execute(update(WaTemplate).where(*where).values(
            status=new_status, reason=value.get("reason")).execution_options(synchronize_session=False))
        emit(session, type=TEMPLATE_STATUS, subject=str(name or template_id)[:255] or None, source=SOURCE, data={
            "channel": "whatsapp", "waba_id": waba_id, "template_id": template_id or None, "name": name,
            "language": language, "status": new_status, "reason": value.get("reason")})
