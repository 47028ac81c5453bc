"""Consent to business-initiated messages: opt-in records (source, time, the text shown), opt-out, and the
STOP / START keywords recognised in inbound messages (configurable, several languages)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.messaging.models import WaConsent


class ConsentInput(BaseModel):
    """`PUT /v1/whatsapp/contacts/{wa_id}/consent`: Meta requires the opt-in to name the business and say what
    the user agreed to, so the text the user saw is required."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=64, description="where it was collected: web_form, checkout, …")
    text_shown: str = Field(min_length=1, max_length=4000, description="the opt-in wording the user agreed to")
    opted_in_at: datetime | None = Field(default=None, description="when; default: now")


def fold(text: str) -> str:
    """Lower case, accents removed, spaces squeezed: 'Arrêter ' and 'ARRETER' are the same keyword."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split()).strip(" .!¡?¿")


class Keywords:
    def __init__(self, stop: Iterable[str], start: Iterable[str]) -> None:
        self.stop = {fold(k) for k in stop if fold(k)}
        self.start = {fold(k) for k in start if fold(k)} - self.stop

    def classify(self, text: str | None) -> Literal["stop", "start"] | None:
        if not text or len(text) > 64:
            return None
        word = fold(text)
        if word in self.stop:
            return "stop"
        if word in self.start:
            return "start"
        return None


def view(row: WaConsent | None, wa_id: str) -> dict[str, Any]:
    if row is None:
        return {"wa_id": wa_id, "status": "unknown", "source": None, "text_shown": None, "opted_in_at": None,
                "opted_out_at": None, "keyword": None}
    return {"wa_id": wa_id, "status": row.status, "source": row.source, "text_shown": row.text_shown,
            "opted_in_at": _iso(row.opted_in_at), "opted_out_at": _iso(row.opted_out_at), "keyword": row.keyword}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def load(session: AsyncSession, wa_id: str) -> WaConsent | None:
    return await session.scalar(select(WaConsent).where(WaConsent.wa_id == wa_id))


async def record(session: AsyncSession, wa_id: str, status: Literal["opted_in", "opted_out"], *, source: str,
                 at: datetime, text_shown: str | None = None, keyword: str | None = None) -> WaConsent:
    row = await load(session, wa_id)
    if row is None:
        row = WaConsent(wa_id=wa_id, status=status, source=source)
        session.add(row)
    row.status, row.source, row.keyword, row.updated_at = status, source, keyword, at
    if status == "opted_in":
        row.opted_in_at = at
        row.text_shown = text_shown if text_shown is not None else row.text_shown
    else:
        row.opted_out_at = at
    await session.flush()
    return row
