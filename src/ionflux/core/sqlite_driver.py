"""SQLite under SQLAlchemy's async engine with one thread hand-off per statement instead of four.

SQLAlchemy's aiosqlite dialect drives aiosqlite, which runs each sqlite3 call on the connection's own
thread: for every statement it makes a cursor, executes, fetches and closes it — four hand-offs, each a
queue put, a thread wake-up, the GIL passed over and back, and an event-loop wake-up. Measured here: a
`SELECT 1` in a session cost 0.46 ms of CPU; an order upsert (a SELECT and an UPDATE) 1.4 ms.

`Cursor` below does the whole statement (cursor, execute, fetch all rows, close) in one call on that
thread and keeps what SQLAlchemy reads afterwards (rows, description, rowcount, lastrowid). The rest is
aiosqlite's: its thread, its transactions (a commit is one hand-off; the pool's rollback of a connection
with no transaction open is none), its errors. The
statements still run off the event loop, so a slow query or a lock wait never stalls requests.

Only the cursor is replaced (aiosqlite 0.22's `Connection._execute` and `_conn` are used, pinned in
constraints.txt); SQLAlchemy gets it through `create_async_engine(..., module=dbapi())`.
"""

from __future__ import annotations

import sqlite3
import types
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi


class Cursor(aiosqlite.Cursor):
    """A statement's whole life in one hand-off; its rows are then read without any."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.iter_chunk_size = conn._iter_chunk_size
        self._rows: deque[Any] = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        await self._hand_off(self._run, sql, () if parameters is None else parameters, False)
        return self

    async def executemany(self, sql: str, parameters: Any) -> Cursor:
        await self._hand_off(self._run, sql, parameters, True)
        return self

    @property
    def _hand_off(self) -> Callable[..., Awaitable[Any]]:
        """aiosqlite's (untyped) way to run a function on the connection's thread."""
        run: Callable[..., Awaitable[Any]] = self._conn._execute
        return run

    def _run(self, sql: str, parameters: Any, many: bool) -> None:
        """On the connection's thread: the sqlite3 cursor is made, used and closed here only."""
        cursor = self._conn._conn.cursor()
        try:
            if many:
                cursor.executemany(sql, parameters)
            else:
                cursor.execute(sql, parameters)
            self._description = cursor.description
            self._rows = deque(cursor.fetchall()) if cursor.description else deque()
            self._rowcount = cursor.rowcount
            self._lastrowid = cursor.lastrowid
        finally:
            cursor.close()

    async def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = min(len(self._rows), size or self.arraysize)
        return [self._rows.popleft() for _ in range(count)]

    async def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    async def close(self) -> None:
        self._rows.clear()

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value


class Connection(aiosqlite.Connection):
    def cursor(self) -> Cursor:  # type: ignore[override]  # no hand-off: each statement makes its own
        return Cursor(self)

    async def rollback(self) -> None:
        """The pool rolls back every connection it takes back, mostly after a commit: with no transaction
        open there is nothing to undo, and no hand-off is spent on it (`in_transaction` is a flag read)."""
        conn = self._connection
        if conn is not None and not conn.in_transaction:
            return
        await super().rollback()


def connect(database: str | bytes | Path, *, iter_chunk_size: int = 64, **kwargs: Any) -> Connection:
    """`aiosqlite.connect`, with the connection class above."""
    location = database.decode() if isinstance(database, bytes) else str(database)

    def connector() -> sqlite3.Connection:
        conn: sqlite3.Connection = sqlite3.connect(location, **kwargs)
        return conn

    return Connection(connector, iter_chunk_size)


def dbapi() -> AsyncAdapt_aiosqlite_dbapi:
    """The DBAPI object for `create_async_engine("sqlite+aiosqlite://…", module=dbapi())`."""
    module = types.ModuleType("ionflux_aiosqlite")
    module.__dict__.update({name: getattr(aiosqlite, name) for name in (
        "DatabaseError", "Error", "IntegrityError", "NotSupportedError", "OperationalError", "ProgrammingError",
        "sqlite_version", "sqlite_version_info")})
    module.__dict__.update(connect=connect, Connection=Connection)
    return AsyncAdapt_aiosqlite_dbapi(module, sqlite3)
