"""The SQLite driver under SQLAlchemy: one thread hand-off per statement, same results as aiosqlite's."""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text

from ionflux.core.db import Database


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    calls: collections.Counter[str] = collections.Counter()
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls[getattr(fn, "__name__", "?")] += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return calls


async def test_a_statement_is_one_hand_off_and_rows_errors_and_counts_come_through(
        tmp_path: Path, hand_offs: collections.Counter[str]) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with db.system() as session:
            await session.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
        hand_offs.clear()
        async with db.system() as session:
            names = [{"n": f"x{i}"} for i in range(5)]
            inserted = await session.execute(text("INSERT INTO t (name) VALUES (:n)"), names)
            assert inserted.rowcount == 5
            one = await session.execute(text("INSERT INTO t (name) VALUES ('y') RETURNING id, name"))
            assert one.all() == [(6, "y")]
            rows = (await session.execute(text("SELECT id, name FROM t ORDER BY id"))).all()
            assert [r.name for r in rows] == ["x0", "x1", "x2", "x3", "x4", "y"]
            assert (await session.execute(text("UPDATE t SET name = name || '!' WHERE id > 4"))).rowcount == 2
        # 4 statements (the executemany is one), a commit; no cursor/fetch/close/rollback hand-offs
        assert dict(hand_offs) == {"_run": 4, "commit": 1}
        with pytest.raises(Exception, match="UNIQUE"):
            async with db.system() as session:
                await session.execute(text("INSERT INTO t (name) VALUES ('x0')"))
        async with db.system() as session:  # the failed transaction was rolled back; the connection works
            assert await session.scalar(text("SELECT count(*) FROM t")) == 6
        async with db.engine.connect() as conn:  # streamed (server-side) results read in pieces
            result = await conn.stream(text("SELECT id FROM t ORDER BY id"))
            assert [row.id async for row in result] == [1, 2, 3, 4, 5, 6]
    finally:
        await db.dispose()
