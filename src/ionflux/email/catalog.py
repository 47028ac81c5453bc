"""A workspace's templates, suppression list and provider choice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.bus.envelope import format_time
from ionflux.core.errors import InvalidRequest, NotFound
from ionflux.core.models import utcnow
from ionflux.email.addresses import parse_address
from ionflux.email.compose import TEMPLATE_ID
from ionflux.email.models import EmailSuppression, EmailTemplate, EmailWorkspaceSettings
from ionflux.email.schemas import SettingsIn, SuppressionIn, TemplateIn
from ionflux.email.settings import PROVIDERS
from ionflux.email.suppressions import REASONS, suppress
from ionflux.email.templates import TemplateSource, check_source


def _template_id(template_id: str) -> str:
    if not TEMPLATE_ID.match(template_id):
        raise InvalidRequest("template_id: 1-128 of A-Z, a-z, 0-9, '_', '.', '-'", field="template_id")
    return template_id


def template_view(row: EmailTemplate) -> dict[str, Any]:
    return {"id": row.id, "subject": row.subject, "text": row.text, "html": row.html, "marketing": row.marketing,
            "version": row.version, "created_at": format_time(row.created_at),
            "updated_at": format_time(row.updated_at)}


async def put_template(session: AsyncSession, workspace_id: str, template_id: str, body: TemplateIn) -> dict[str, Any]:
    _template_id(template_id)
    if body.text is None and body.html is None:
        raise InvalidRequest("text or html: a template needs at least one body", field="text")
    check_source(TemplateSource(body.subject, body.text, body.html))
    row = await session.get(EmailTemplate, (workspace_id, template_id))
    if row is None:
        row = EmailTemplate(workspace_id=workspace_id, id=template_id, subject=body.subject, text=body.text,
                            html=body.html, marketing=body.marketing, version=1)
        session.add(row)
    else:
        row.subject, row.text, row.html, row.marketing = body.subject, body.text, body.html, body.marketing
        row.version += 1
        row.updated_at = utcnow()
    await session.flush()
    return template_view(row)


async def get_template(session: AsyncSession, workspace_id: str, template_id: str) -> EmailTemplate:
    row = await session.get(EmailTemplate, (workspace_id, _template_id(template_id)))
    if row is None:
        raise NotFound(f"no template {template_id!r} in this workspace", field="template_id")
    return row


async def list_templates(session: AsyncSession) -> list[dict[str, Any]]:
    rows = (await session.scalars(select(EmailTemplate).order_by(EmailTemplate.id))).all()
    return [template_view(r) for r in rows]


def suppression_view(row: EmailSuppression) -> dict[str, Any]:
    return {"email": row.email, "reason": row.reason, "detail": row.detail, "message_id": row.message_id,
            "created_at": format_time(row.created_at)}


async def add_suppression(session: AsyncSession, workspace_id: str, body: SuppressionIn) -> dict[str, Any]:
    if body.reason not in REASONS:
        raise InvalidRequest(f"reason: one of {', '.join(REASONS)}", field="reason")
    address = parse_address(body.email, "email")
    await suppress(session, workspace_id, [(address.email, body.reason, body.detail, None)])
    row = await session.get(EmailSuppression, (workspace_id, address.key))
    assert row is not None
    return suppression_view(row)


async def list_suppressions(session: AsyncSession, *, reason: str | None, email: str | None, after: str | None,
                            limit: int) -> dict[str, Any]:
    query = select(EmailSuppression).order_by(EmailSuppression.email).limit(limit + 1)
    if reason is not None:
        query = query.where(EmailSuppression.reason == reason)
    if email is not None:
        query = query.where(EmailSuppression.email == email.lower())
    if after is not None:
        query = query.where(EmailSuppression.email > after.lower())
    rows = list((await session.scalars(query)).all())
    total = await session.scalar(select(func.count()).select_from(EmailSuppression))
    page = rows[:limit]
    return {"suppressions": [suppression_view(r) for r in page], "total": total,
            "next_after": page[-1].email if len(rows) > limit else None}


async def remove_suppression(session: AsyncSession, email: str) -> None:
    result = await session.execute(delete(EmailSuppression).where(EmailSuppression.email == email.lower())
                                   .execution_options(synchronize_session=False))
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"{email!r} is not on this workspace's suppression list", field="email")


def _provider(value: str | None, field: str) -> str | None:
    if value is not None and value not in PROVIDERS:
        raise InvalidRequest(f"{field}: one of {', '.join(PROVIDERS)}", field=field)
    return value


async def put_settings(session: AsyncSession, workspace_id: str, body: SettingsIn) -> EmailWorkspaceSettings:
    provider = _provider(body.provider, "provider")
    assert provider is not None
    fallback = _provider(body.fallback_provider, "fallback_provider")
    if fallback == provider:
        raise InvalidRequest("fallback_provider: must differ from provider", field="fallback_provider")
    row = await session.get(EmailWorkspaceSettings, workspace_id)
    if row is None:
        row = EmailWorkspaceSettings(workspace_id=workspace_id, provider=provider, fallback_provider=fallback)
        session.add(row)
    else:
        row.provider, row.fallback_provider, row.updated_at = provider, fallback, utcnow()
    await session.flush()
    return row
