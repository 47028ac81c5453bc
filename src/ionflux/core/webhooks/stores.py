"""Where the inbox commits a batch: one transaction holding the new inbox rows and, for each row that
was not a duplicate, its outbox event. Each store makes that one cheap call for its engine:

- SQLite: aiosqlite hands every statement (cursor, execute, fetch, close, commit) to its thread
  separately; here a dedicated `sqlite3` connection runs the whole batch on the loop's thread, with
  no hand-off at all (see `SqliteInboxStore`).
- PostgreSQL: a single statement (data-modifying CTEs) inserts the inbox rows, skips conflicts, and
  inserts the events of the rows that went in: one round trip, one commit, no separate BEGIN.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from sqlalchemy import Table
from sqlalchemy.dialects import sqlite

from ionflux.core.bus.notify import asyncpg_dsn
from ionflux.core.models import OutboxEvent
from ionflux.core.webhooks.models import WebhookDelivery

BUSY_SECONDS = 30.0  # as long as the main engine's busy_timeout
CHECKPOINT_SECONDS = 0.5
INBOX: Table = WebhookDelivery.__table__  # type: ignore[assignment]
OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]


class InboxStore(Protocol):
    async def write(self, rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> set[str]:
        """Insert `rows` (skipping dedupe-key conflicts) and the events of those inserted, atomically.

        `events[i]` belongs to `rows[i]` (its id is `rows[i]["event_id"]`). Returns the inserted row ids.
        """
        ...

    async def close(self) -> None: ...


class SqliteInboxStore:
    """The batch is written on the event loop's own thread over a plain `sqlite3` connection.

    A commit in WAL mode with `synchronous=NORMAL` writes to the WAL without an fsync: for one batch
    that is a few hundred microseconds, less than handing the work to a thread costs (the hand-off and
    the GIL passing back and forth measured as ~0.3 ms of CPU per request). What can take long stays
    off the loop: the write lock is taken with a non-blocking `BEGIN IMMEDIATE`, retried on short
    asyncio sleeps while another connection (the outbox relay, a consumer) holds it, and checkpoints
    (copying the WAL into the database, with an fsync) run on their own thread and connection.
    Values are encoded by SQLAlchemy's own SQLite bind processors, so the rows read back exactly as
    the ORM would have written them."""

    def __init__(self, async_url: str) -> None:
        self.path = async_url.split(":///", 1)[1]
        self._conn: sqlite3.Connection | None = None
        # Auto-checkpointing would stall every ~100th webhook (each writes a dozen b-tree pages) for as
        # long as the disk takes to sync; this store checkpoints on a thread instead.
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ionflux-inbox-checkpoint")
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_due = 0.0
        self._checkpointing = False
        self._inbox = _Encoder(INBOX, exclude=())
        self._outbox = _Encoder(OUTBOX, exclude=("seq",))
        # Identifiers come from our own table metadata; every value is a bound parameter.
        self._insert_row = (f"INSERT INTO {INBOX.name} ({self._inbox.names}) "  # noqa: S608
                            f"VALUES ({self._inbox.marks}) ON CONFLICT (provider, dedupe_key) DO NOTHING RETURNING id")
        self._insert_event = (f"INSERT INTO {OUTBOX.name} ({self._outbox.names}) "  # noqa: S608
                              f"VALUES ({self._outbox.marks})")

    async def write(self, rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> set[str]:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        # Encode before taking the lock: the lock is held only for the statements themselves.
        encoded = [self._inbox.values(row) for row in rows]
        await _begin(conn)
        try:
            inserted: set[str] = set()
            for row, values in zip(rows, encoded, strict=True):
                if conn.execute(self._insert_row, values).fetchone() is not None:
                    inserted.add(row["id"])
            fresh = [self._outbox.values(e) for r, e in zip(rows, events, strict=True) if r["id"] in inserted]
            if fresh:
                conn.executemany(self._insert_event, fresh)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._maybe_checkpoint()
        return inserted

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: this store issues BEGIN IMMEDIATE / COMMIT itself. timeout=0: see _begin.
        conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "wal_autocheckpoint=0"):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    def _checkpoint(self) -> None:
        try:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = sqlite3.connect(self.path, timeout=5, isolation_level=None,
                                                        check_same_thread=False)
            self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the next one catches up; other connections still checkpoint automatically
        finally:
            self._checkpointing = False

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if now >= self._checkpoint_due and not self._checkpointing:
            self._checkpoint_due = now + CHECKPOINT_SECONDS
            self._checkpointing = True
            self._checkpointer.submit(self._checkpoint)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
        self._checkpointer.shutdown(wait=True)
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None


class _Encoder:
    """Column order, placeholders and SQLAlchemy's SQLite bind processors for one table."""

    def __init__(self, table: Table, exclude: tuple[str, ...]) -> None:
        dialect = sqlite.dialect()
        columns = [c for c in table.columns if c.name not in exclude]
        self.columns = [c.name for c in columns]
        self.names = ", ".join(self.columns)
        self.marks = ", ".join("?" for _ in columns)
        self.processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        out = []
        for name, process in zip(self.columns, self.processors, strict=True):
            value = row.get(name)  # the inbox builds complete rows; absent nullable columns are NULL
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out)


async def _begin(conn: sqlite3.Connection) -> None:
    """Take the write lock up front without blocking the loop: while another writer (the outbox relay,
    a consumer) has it, retry every fraction of a millisecond on asyncio sleeps. SQLite's own busy
    handler would sleep 1, 2, 5 … 100 ms between tries, on the loop's thread."""
    deadline = time.monotonic() + BUSY_SECONDS
    pause = 0.0001
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.002)


_PG_WRITE = """
WITH rows AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], $5::varchar[],
                         $6::varchar[], $7::varchar[], $8::varchar[], $9::varchar[], $10::varchar[],
                         $11::text[], $12::bytea[])
        AS r(id, workspace_id, provider, connection_id, account, delivery_id, dedupe_key, topic, event_type,
             event_id, headers, body)
), ins AS (
    INSERT INTO webhook_deliveries (id, workspace_id, provider, connection_id, account, delivery_id, dedupe_key,
                                    topic, event_type, event_id, status, received_at, headers, body)
    SELECT id, workspace_id, provider, connection_id, account, delivery_id, dedupe_key, topic, event_type,
           event_id, 'received', $13, headers::json, body FROM rows
    ON CONFLICT (provider, dedupe_key) DO NOTHING
    RETURNING id, event_id
), events AS (
    INSERT INTO outbox_events (id, type, source, subject, time, data, workspace_id, status, attempts,
                               next_attempt_at)
    SELECT e.id, e.type, e.source, e.subject, e.time, e.data::json, e.workspace_id, 'pending', 0, e.time
    FROM unnest($14::varchar[], $15::varchar[], $16::varchar[], $17::varchar[], $18::timestamptz[],
                $19::text[], $20::varchar[]) WITH ORDINALITY AS e(id, type, source, subject, time, data,
                                                                 workspace_id, n)
    JOIN ins ON ins.event_id = e.id
    ORDER BY e.n
)
SELECT id FROM ins
"""
_ROW_COLUMNS = ("id", "workspace_id", "provider", "connection_id", "account", "delivery_id", "dedupe_key", "topic",
                "event_type", "event_id")
_EVENT_COLUMNS = ("id", "type", "source", "subject", "time")


class PostgresInboxStore:
    def __init__(self, async_url: str, *, pool_size: int = 4) -> None:
        self.dsn = asyncpg_dsn(async_url)
        self.pool_size = pool_size
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def write(self, rows: list[dict[str, Any]], events: list[dict[str, Any]]) -> set[str]:
        pool = await self._get_pool()
        args: list[Any] = [[r[c] for r in rows] for c in _ROW_COLUMNS]
        args += [[json.dumps(r["headers"]) for r in rows], [r["body"] for r in rows], rows[0]["received_at"]]
        args += [[e[c] for e in events] for c in _EVENT_COLUMNS]
        args += [[json.dumps(e["data"]) for e in events], [e["workspace_id"] for e in events]]
        records = await pool.fetch(_PG_WRITE, *args)
        return {str(r["id"]) for r in records}

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    import asyncpg

                    # Only this store uses these connections and it leaves no session state behind, so
                    # skip the default reset on release (a round trip of RESET ALL/UNLISTEN/… per batch).
                    self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size,
                                                           reset=_no_reset)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()


async def _no_reset(_connection: Any) -> None:
    return None
