"""The suppression list: addresses a workspace must not mail (hard bounces, complaints, unsubscribes, manual)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.core.models import utcnow
from ionflux.email.models import EmailSuppression

REASONS = ("bounce", "complaint", "unsubscribe", "manual")


def insert_ignoring_duplicates(session: AsyncSession, model: type[Any], rows: list[dict[str, Any]]) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` for the session's database (SQLite or PostgreSQL).

    Two transactions adding the same key must both commit (a concurrent webhook and a send), so this is
    not a read-then-insert."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model).values(rows).on_conflict_do_nothing()


async def suppress(session: AsyncSession, workspace_id: str, entries: Iterable[tuple[str, str, str | None, str | None]]
                   ) -> None:
    """Add (email, reason, detail, message_id) entries; an address already suppressed keeps its first reason."""
    rows = [{"workspace_id": workspace_id, "email": email.lower(), "reason": reason,
             "detail": (detail or "")[:1000] or None, "message_id": message_id, "created_at": utcnow()}
            for email, reason, detail, message_id in entries]
    if rows:
        await session.execute(insert_ignoring_duplicates(session, EmailSuppression, rows))


async def suppressed_among(session: AsyncSession, emails: Iterable[str]) -> dict[str, str]:
    """email (lower-cased) -> reason, for those of `emails` on the workspace's list."""
    keys = sorted({e.lower() for e in emails})
    found: dict[str, str] = {}
    for start in range(0, len(keys), 900):  # stay under SQLite's bound-parameter limit
        rows = await session.execute(select(EmailSuppression.email, EmailSuppression.reason)
                                     .where(EmailSuppression.email.in_(keys[start:start + 900])))
        found.update({email: reason for email, reason in rows.all()})
    return found
