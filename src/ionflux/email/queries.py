"""Reading messages back: one with its status history, or a filtered, cursor-paged list (newest first)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus.envelope import format_time
from ionflux.core.errors import InvalidRequest, NotFound
from ionflux.email.compose import TAG
from ionflux.email.models import EmailMessage, EmailStatusChange
from ionflux.email.status import STATUSES, aware


def message_view(row: EmailMessage) -> dict[str, Any]:
    return {
        "id": row.id, "batch_id": row.batch_id, "status": row.status, "status_at": format_time(row.status_at),
        "from": row.sender, "to": row.to, "cc": row.cc, "bcc": row.bcc, "reply_to": row.reply_to,
        "subject": row.subject, "tags": row.tags, "template_id": row.template_id, "marketing": row.marketing,
        "refused": row.refused, "provider": row.provider, "provider_message_id": row.provider_message_id,
        "attempts": row.attempts, "last_error": row.last_error,
        "send_at": format_time(row.send_at) if row.send_at else None, "created_at": format_time(row.created_at),
    }


async def get_message(session: AsyncSession, message_id: str) -> dict[str, Any]:
    row = await session.get(EmailMessage, message_id)
    if row is None:
        raise NotFound(f"no message {message_id!r} in this workspace", field="message_id")
    history = (await session.scalars(select(EmailStatusChange).where(EmailStatusChange.message_id == message_id)
                                     .order_by(EmailStatusChange.seq))).all()
    view = message_view(row)
    view["history"] = [{"status": h.status, "at": format_time(h.at), "recipient": h.recipient,
                        "provider": h.provider, "detail": h.detail} for h in history]
    return view


def _cursor(row: EmailMessage) -> str:
    return base64.urlsafe_b64encode(json.dumps([format_time(row.created_at), row.id]).encode()).decode()


def _after(cursor: str) -> tuple[datetime, str]:
    try:
        moment, row_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return aware(datetime.fromisoformat(str(moment).replace("Z", "+00:00"))), str(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRequest("cursor: not a cursor this endpoint returned", field="cursor") from None


async def list_messages(session: AsyncSession, *, tag: str | None, status: str | None, batch_id: str | None,
                        cursor: str | None, limit: int) -> dict[str, Any]:
    query = select(EmailMessage).order_by(EmailMessage.created_at.desc(), EmailMessage.id.desc()).limit(limit + 1)
    if status is not None:
        if status not in STATUSES:
            raise InvalidRequest(f"status: one of {', '.join(STATUSES)}", field="status")
        query = query.where(EmailMessage.status == status)
    if tag is not None:
        if not TAG.match(tag):
            raise InvalidRequest("tag: 1-64 of A-Z, a-z, 0-9, '_' and '-'", field="tag")
        escaped = tag.replace("_", "\\_")  # '_' is a LIKE wildcard; tags hold nothing else special
        query = query.where(EmailMessage.tag_index.like(f"%,{escaped},%", escape="\\"))
    if batch_id is not None:
        query = query.where(EmailMessage.batch_id == batch_id)
    if cursor:
        moment, row_id = _after(cursor)
        query = query.where(or_(EmailMessage.created_at < moment,
                                and_(EmailMessage.created_at == moment, EmailMessage.id < row_id)))
    rows = list((await session.scalars(query)).all())
    page = rows[:limit]
    return {"messages": [message_view(r) for r in page],
            "next_cursor": _cursor(page[-1]) if len(rows) > limit else None}
