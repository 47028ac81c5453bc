"""Bulk rows: what `RowWriter` stores is what a plain insert of the same values stores, on each database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert, select, text

from ionflux.core.bulk import SQLITE_ROWS, RowWriter
from ionflux.core.db import Database
from ionflux.email.models import EmailMessage, EmailStatusChange

NOW = datetime(2026, 11, 27, 4, 30, 53, 123456, tzinfo=UTC)
SHARED: dict[str, Any] = {
    "sender": {"email": "news@shop.example.com", "name": "Shop"},
    "cc": [],
    "bcc": [],
    "reply_to": None,
    "headers": {"X-Campaign": "ç1"},
    "tags": ["spring"],
    "tag_index": ",spring,",
    "template_id": "offer",
    "marketing": True,
    "refused": [],
    "status": "queued",
    "status_at": NOW,
    "provider": None,
    "provider_message_id": None,
    "last_error": None,
    "attempts": 0,
    "send_at": None,
    "next_attempt_at": NOW,
    "claimed_until": None,
    "created_at": NOW,
    "batch_id": "b1",
    "idempotency_key": None,
    "text": None,
    "html": None,
}
VARYING = ("id", "batch_index", "to", "subject", "substitutions")


def _raw(column: str) -> str:
    return f'CAST("{column}" AS TEXT)'


@pytest.mark.parametrize("through", ["driver", "sqlalchemy"])
async def test_rows_match_a_plain_insert(database: Database, through: str) -> None:
    table = cast(Table, EmailMessage.__table__)
    async with database.tenant("ws1") as session:
        plain = [
            {
                "workspace_id": "ws1",
                **SHARED,
                "id": f"p{i}",
                "batch_index": i,
                "to": [{"email": f"u{i}@example.com"}],
                "subject": f"Olá {i}",
                "substitutions": {"-t0-": f"U{i}"},
            }
            for i in range(3)
        ]
        await session.execute(insert(table), plain)
        writer = RowWriter(session, table, {"workspace_id": "ws1", **SHARED}, VARYING, shared=("headers",))
        if through == "sqlalchemy":  # what a named-parameter driver would take
            writer._sql = writer._chunks = None
        for row in plain:
            writer.add((f"w{row['id'][1:]}", *(row[name] for name in VARYING[1:])))
        assert len(writer) == 3
        await writer.flush()
        assert len(writer) == 0
    columns = [c.name for c in table.columns if c.name != "id"]
    async with database.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(f"SELECT id, {', '.join(_raw(c) for c in columns)} FROM email_messages ORDER BY id")
            )
        ).all()
    by_id = {r[0]: r[1:] for r in rows}
    assert len(by_id) == 6
    for i in range(3):
        assert by_id[f"w{i}"] == by_id[f"p{i}"]
    async with database.tenant("ws1") as session:  # and the ORM reads them back alike
        loaded = (await session.scalars(select(EmailMessage).order_by(EmailMessage.id))).all()
    assert [(m.to, m.headers, m.reply_to, m.created_at) for m in loaded[:3]] == [
        (m.to, m.headers, m.reply_to, m.created_at) for m in loaded[3:]
    ]


async def test_shared_values_are_processed_once_per_object(database: Database) -> None:
    table = cast(Table, EmailStatusChange.__table__)
    detail: dict[str, Any] = {"reason": "x"}
    async with database.tenant("ws1") as session:
        writer = RowWriter(
            session,
            table,
            {"workspace_id": "ws1"},
            ("message_id", "status", "at", "recipient", "provider", "detail"),
            shared=("at", "detail"),
        )
        for i in range(3):
            writer.add((f"m{i}", "sent", NOW, None, "smtp", detail))
        writer.add(("m3", "bounced", NOW, "a@example.com", "smtp", {"reason": "y"}))  # another object: its own value
        await writer.flush()
        rows = (
            await session.execute(
                select(EmailStatusChange.message_id, EmailStatusChange.detail, EmailStatusChange.at).order_by(
                    EmailStatusChange.message_id
                )
            )
        ).all()
    assert [(m, d) for m, d, _ in rows] == [
        ("m0", {"reason": "x"}),
        ("m1", {"reason": "x"}),
        ("m2", {"reason": "x"}),
        ("m3", {"reason": "y"}),
    ]
    assert all(at.replace(tzinfo=UTC) == NOW for _, _, at in rows)


async def test_a_large_batch_goes_in_whole_and_a_retried_one_skips_what_is_stored(database: Database) -> None:
    # On SQLite: multi-row INSERTs of up to SQLITE_ROWS rows, so 2.5 chunks here (the last one shorter).
    table = cast(Table, EmailStatusChange.__table__)
    count = SQLITE_ROWS * 2 + SQLITE_ROWS // 2
    for attempt in range(2):  # the second time every row is already there
        async with database.tenant("ws1") as session:
            writer = RowWriter(session, table, {"workspace_id": "ws1"},
                               ("seq", "message_id", "status", "at", "recipient", "provider", "detail"),
                               skip_existing=("seq",))
            for i in range(count):
                writer.add((i + 1, f"m{i}", "sent", NOW, None, "smtp", {"n": i, "attempt": attempt}))
            await writer.flush()
    async with database.tenant("ws1") as session:
        rows = (await session.execute(select(EmailStatusChange.message_id, EmailStatusChange.detail))).all()
    assert len(rows) == count
    assert {m: d for m, d in rows} == {f"m{i}": {"n": i, "attempt": 0} for i in range(count)}
