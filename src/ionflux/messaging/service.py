"""WhatsApp messaging rules: who may be sent what, when (24-hour window, opt-in), and what became of it.

Knows no HTTP framework. A send is checked and recorded (status `pending`) in one transaction, handed to
Meta, then recorded as `accepted` with Meta's message id, or `failed` with our error code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.errors import Forbidden, IonfluxError, NotFound, OutsideServiceWindow
from ionflux.core.models import utcnow
from ionflux.core.platform import Platform
from ionflux.messaging import consent
from ionflux.messaging.models import WaConsent, WaContact, WaMessage, WaStatus
from ionflux.messaging.numbers import NumberDirectory
from ionflux.messaging.settings import WhatsAppSettings
from ionflux.messaging.validation import SendRequest, graph_message
from ionflux.messaging.whatsapp import WINDOW_HINT, WhatsAppCloudClient

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
# Statuses only move forward; a late `sent` never undoes `read` (Meta does not promise order).
RANK = {"pending": 0, "accepted": 1, "sent": 2, "failed": 2.5, "delivered": 3, "read": 4}
STAMP = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def message_view(row: WaMessage) -> dict[str, Any]:
    def iso(v: datetime | None) -> str | None:
        return aware(v).isoformat() if v is not None else None

    return {"id": row.id, "channel": row.channel, "phone_number_id": row.phone_number_id, "to": row.to,
            "type": row.type, "template_name": row.template_name, "business_initiated": row.business_initiated,
            "wamid": row.wamid, "status": row.status, "error": row.error,
            "context_message_id": row.context_message_id, "created_at": iso(row.created_at),
            "sent_at": iso(row.sent_at), "delivered_at": iso(row.delivered_at), "read_at": iso(row.read_at),
            "failed_at": iso(row.failed_at)}


def apply_status(row: WaMessage, status: str, at: datetime, errors: list[Any] | None) -> bool:
    """Fold one status into a message; True if its current status changed."""
    column = STAMP.get(status)
    if column is not None and getattr(row, column) is None:
        setattr(row, column, at)
    if status == "failed" and errors:
        row.error = {"code": "DELIVERY_FAILED", "meta_errors": errors}
    if RANK.get(status, -1) > RANK.get(row.status, 0):
        row.status = status
        return True
    return False


class WhatsAppService:
    def __init__(self, platform: Platform, settings: WhatsAppSettings, cloud: WhatsAppCloudClient, *,
                 clock: Clock = utcnow) -> None:
        self.platform = platform
        self.settings = settings
        self.cloud = cloud
        self.numbers = NumberDirectory(platform, platform_wabas=settings.platform_waba_ids)
        self.clock = clock  # injectable: the 24-hour window is checked against it

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.settings.window_hours)

    async def send(self, workspace_id: str, req: SendRequest) -> dict[str, Any]:
        body = graph_message(req)  # 400 naming the field, before anything else
        number = await self.numbers.pick(workspace_id, req.phone_number_id)
        to = body["to"]
        now = self.clock()
        token = await self.numbers.token(workspace_id, number)  # no token: refused before anything is recorded
        async with self.platform.db.tenant(workspace_id) as session:
            business_initiated = await self._check_rules(session, number.phone_number_id, to, req.type, now)
            row = WaMessage(phone_number_id=number.phone_number_id, to=to, type=req.type,
                            template_name=(req.template or {}).get("name") if req.type == "template" else None,
                            business_initiated=business_initiated, status="pending",
                            context_message_id=(req.context or {}).get("message_id"))
            session.add(row)  # recorded before Meta is asked: a crash leaves a trace, not silence
        try:
            result = await self.cloud.send(number.phone_number_id, token, body, rate=number.messages_per_second)
        except IonfluxError as exc:
            await self._failed(workspace_id, row.id, exc)
            exc.details["message_id"] = row.id  # GET /v1/whatsapp/messages/{id} shows it as failed
            raise
        row.wamid, row.status = result.wamid, "accepted"
        async with self.platform.db.tenant(workspace_id) as session:
            # One statement. A status webhook that beat this commit is kept in wa_statuses and folded in on read.
            await session.execute(update(WaMessage).where(WaMessage.id == row.id, WaMessage.status == "pending")
                                  .values(wamid=row.wamid, status="accepted", updated_at=utcnow())
                                  .execution_options(synchronize_session=False))
        return message_view(row)

    async def _check_rules(self, session: AsyncSession, phone_number_id: str, to: str, kind: str,
                           now: datetime) -> bool:
        """Raise unless this message may go now; return whether it is business-initiated (window closed)."""
        window = select(WaContact.last_inbound_at).where(
            WaContact.phone_number_id == phone_number_id, WaContact.wa_id == to).scalar_subquery()
        agreement = select(WaConsent.status).where(WaConsent.wa_id == to).scalar_subquery()
        stamp, agreed = (await session.execute(select(window, agreement))).one()  # both in one round trip
        last = aware(stamp) if stamp is not None else None
        window_open = last is not None and now - last < self.window
        if kind != "template":
            if not window_open:
                since = f"the user last wrote at {last.isoformat()}" if last else "the user has not written yet"
                raise OutsideServiceWindow(
                    f"free-form messages need the user's last message within {self.settings.window_hours:g} h "
                    f"({since}); {WINDOW_HINT}", field="type",
                    details={"last_inbound_at": last.isoformat() if last else None, "suggestion": "template"})
            return False
        if agreed == "opted_out":
            raise Forbidden("this user opted out of business-initiated messages (STOP); a new opt-in is needed",
                            field="to", details={"reason": "opted_out"})
        if not window_open and agreed != "opted_in":
            raise Forbidden("business-initiated messages need a recorded opt-in for this user: "
                            "PUT /v1/whatsapp/contacts/{wa_id}/consent", field="to", details={"reason": "no_opt_in"})
        return not window_open

    async def _failed(self, workspace_id: str, message_id: str, exc: IonfluxError) -> None:
        async with self.platform.db.tenant(workspace_id) as session:
            row = await session.get(WaMessage, message_id)
            if row is not None:
                row.status, row.failed_at = "failed", self.clock()
                row.error = {"code": exc.code, "message": exc.message,
                             "meta_code": exc.details.get("meta_code")}

    async def get(self, workspace_id: str, message_id: str) -> dict[str, Any]:
        async with self.platform.db.tenant(workspace_id) as session:
            row = await session.get(WaMessage, message_id)
            if row is None or row.workspace_id != workspace_id:
                raise NotFound(f"no WhatsApp message {message_id!r}", field="id")
            if row.wamid is not None:  # statuses that arrived before the send recorded its wamid
                seen = (await session.scalars(select(WaStatus).where(WaStatus.wamid == row.wamid)
                                              .order_by(WaStatus.at))).all()
                for status in seen:
                    apply_status(row, status.status, aware(status.at), status.errors)
            return message_view(row)

    # -- consent -----------------------------------------------------------------------------------

    async def get_consent(self, workspace_id: str, wa_id: str) -> dict[str, Any]:
        async with self.platform.db.tenant(workspace_id) as session:
            return consent.view(await consent.load(session, wa_id), wa_id)

    async def opt_in(self, workspace_id: str, wa_id: str, given: consent.ConsentInput) -> dict[str, Any]:
        at = aware(given.opted_in_at) if given.opted_in_at else self.clock()
        async with self.platform.db.tenant(workspace_id) as session:
            row = await consent.record(session, wa_id, "opted_in", source=given.source, at=at,
                                       text_shown=given.text_shown)
            return consent.view(row, wa_id)

    async def opt_out(self, workspace_id: str, wa_id: str, source: str = "api") -> dict[str, Any]:
        async with self.platform.db.tenant(workspace_id) as session:
            row = await consent.record(session, wa_id, "opted_out", source=source, at=self.clock())
            return consent.view(row, wa_id)
