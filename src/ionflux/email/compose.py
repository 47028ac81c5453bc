"""Checking what a caller asked to send: addresses, content or template, headers, tags, time."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.errors import InvalidRequest, NotFound
from ionflux.email.addresses import Address, parse_address
from ionflux.email.models import EmailTemplate
from ionflux.email.providers.mime import RESERVED_HEADERS
from ionflux.email.settings import EmailSettings
from ionflux.email.status import aware
from ionflux.email.templates import TemplateSource

TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what SES tag values and SendGrid categories both accept
HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 field name: printable ASCII except ':'
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
MAX_TAGS = 10
MAX_HEADERS = 50
MAX_SCHEDULE = timedelta(days=30)


def check_tags(tags: list[str]) -> list[str]:
    if len(tags) > MAX_TAGS:
        raise InvalidRequest(f"tags: at most {MAX_TAGS} tags", field="tags")
    for i, tag in enumerate(tags):
        if not TAG.match(tag):
            raise InvalidRequest(f"tags[{i}]: {tag!r} must be 1-64 of A-Z, a-z, 0-9, '_' and '-'", field=f"tags[{i}]")
    return list(dict.fromkeys(tags))


def tag_index(tags: list[str]) -> str:
    return f",{','.join(tags)}," if tags else ""


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    if len(headers) > MAX_HEADERS:
        raise InvalidRequest(f"headers: at most {MAX_HEADERS} headers", field="headers")
    for name, value in headers.items():
        if not HEADER_NAME.match(name):
            raise InvalidRequest(f"headers: {name!r} is not a header name", field=f"headers.{name}")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidRequest(f"headers: {name} is set from the request's own fields", field=f"headers.{name}")
        if "\r" in value or "\n" in value or len(value) > 998:
            raise InvalidRequest(f"headers.{name}: a single line of at most 998 characters", field=f"headers.{name}")
    return dict(headers)


def check_send_at(send_at: datetime | None, now: datetime) -> datetime | None:
    """A future time to send at (UTC), or None for now; a time already past means now."""
    if send_at is None:
        return None
    moment = send_at.replace(tzinfo=UTC) if send_at.tzinfo is None else send_at.astimezone(UTC)
    if moment - now > MAX_SCHEDULE:
        raise InvalidRequest("send_at: at most 30 days ahead", field="send_at")
    return moment if moment > now else None


def fallback_time(settings: EmailSettings, now: datetime) -> datetime:
    """When the worker takes over a message due now, should the request that queued it die before sending."""
    return now + timedelta(seconds=settings.claim_seconds)


def idempotency_expired(settings: EmailSettings, created_at: datetime, now: datetime) -> bool:
    """An idempotency key older than the window is free again."""
    return aware(created_at) < now - timedelta(hours=settings.idempotency_hours)


def optional_address(value: Any, field: str) -> Address | None:
    return None if value in (None, "") else parse_address(value, field)


@dataclass(frozen=True)
class Content:
    source: TemplateSource
    template_id: str | None
    marketing: bool


async def content_of(session: AsyncSession, *, template_id: str | None, subject: str | None, text: str | None,
                     html: str | None, marketing: bool | None) -> Content:
    """Either a stored template or inline subject + text/html, never both."""
    if template_id is not None:
        if subject is not None or text is not None or html is not None:
            raise InvalidRequest("give either template_id or subject/text/html, not both", field="template_id")
        if not TEMPLATE_ID.match(template_id):
            raise InvalidRequest("template_id: 1-128 of A-Z, a-z, 0-9, '_', '.', '-'", field="template_id")
        row = await session.get(EmailTemplate, (_scope(session), template_id))
        if row is None:
            raise NotFound(f"template_id: no template {template_id!r} in this workspace", field="template_id")
        return Content(TemplateSource(row.subject, row.text, row.html), template_id,
                       row.marketing if marketing is None else marketing)
    if not subject:
        raise InvalidRequest("subject: required (or give a template_id)", field="subject")
    if text is None and html is None:
        raise InvalidRequest("text or html: give at least one (or a template_id)", field="text")
    return Content(TemplateSource(subject, text, html), None, bool(marketing))


def _scope(session: AsyncSession) -> str:
    from ionflux.core.db import scope_of

    return str(scope_of(session))
