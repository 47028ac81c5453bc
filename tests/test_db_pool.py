"""The PostgreSQL pool replaces a connection the server dropped while it sat idle, without an error,
and does not ping connections that were just in use (no extra round trips on the hot path)."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import event, text

from ionflux.core import db as db_module
from ionflux.core.db import Database

from .conftest import PG_ADMIN_DSN


async def _backend_pid(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced_before_use(database_url: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("a PostgreSQL pool behaviour")
    db = Database(database_url, pool_size=1)
    statements: list[str] = []
    event.listen(db.engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: statements.append(statement))
    try:
        first = await _backend_pid(db)
        assert await _backend_pid(db) == first  # reused at once: no ping, the same connection
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", first) is True
        finally:
            await admin.close()
        monkeypatch.setattr(db_module, "IDLE_PING_SECONDS", 0.0)  # the pooled connection now counts as idle
        second = await _backend_pid(db)  # no error: the dead connection failed its ping and was replaced
        assert second != first
        assert statements == ["SELECT pg_backend_pid()"] * 3
    finally:
        await db.dispose()
