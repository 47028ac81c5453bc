"""Async storage: engine set-up (SQLite WAL or PostgreSQL pool), migrations, and tenant-scoped sessions.

Tenant isolation is by construction: every ORM statement on a `TenantScoped` model run in a session
opened with `db.tenant(workspace_id)` gets `workspace_id = :ws` added to it (SELECT, UPDATE and
DELETE, joins and relationships included), new rows are stamped with that workspace, and a session
that declared no scope at all refuses to touch tenant tables. Only core machinery opens
`db.system()` sessions, which see everything.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Select, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.util import find_tables

from ionflux.core import sqlite_driver
from ionflux.core.models import Base, TenantScoped

_SCOPE = "ionflux_scope"  # session.info key: a workspace id, or SYSTEM
SYSTEM = object()
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class TenancyViolation(RuntimeError):
    """Code tried to touch tenant data without a declared scope, or across workspaces."""


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(
                url, echo=echo, connect_args={"timeout": 30}, module=sqlite_driver.dbapi()
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size)
            _ping_when_idle(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Background work whose writes are re-derived if lost (see `tenant(background=True)`) has its own
        # pool on PostgreSQL, whose connections commit without waiting for the WAL flush; it also
        # keeps the relay and consumers from taking the connections requests need.
        self.background_engine = self.engine
        self._background_sessions = self.sessions
        if not self.is_sqlite:
            self.background_engine = create_async_engine(
                url, echo=echo, pool_size=max(2, pool_size // 2), max_overflow=pool_size,
                connect_args={"server_settings": {"synchronous_commit": "off"}})
            _ping_when_idle(self.background_engine)
            self._background_sessions = async_sessionmaker(self.background_engine, expire_on_commit=False)

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        return (self.engine,) if self.background_engine is self.engine else (self.engine, self.background_engine)

    @asynccontextmanager
    async def tenant(self, workspace_id: str, *, background: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction that can only see and write rows of `workspace_id`. Commits on success.

        `background=True`: the commit returns before its WAL record reaches disk (PostgreSQL). Only for
        writes that are re-derived if lost: the outbox relay's bookkeeping and the embedded consumers'
        work. Their source, an outbox row committed durably, stays pending until the relay's mark is on
        disk, and PostgreSQL flushes the WAL in order, so a crash can only lose a suffix (the consumer's
        work and the mark together), which is then redone; consumers are idempotent. Fewer fsyncs in
        the background is lower latency for the durable commits that answer requests. (SQLite in WAL
        mode with synchronous=NORMAL commits without a sync anyway.)
        """
        if not workspace_id:
            raise TenancyViolation("a tenant session needs a workspace id")
        sessions = self._background_sessions if background else self.sessions
        async with sessions() as session, session.begin():
            session.sync_session.info[_SCOPE] = workspace_id
            yield session

    @asynccontextmanager
    async def system(self, *, background: bool = False) -> AsyncIterator[AsyncSession]:
        """A transaction across workspaces, for core machinery (relay, vault rotation, auth lookup).
        `background`: as for `tenant`."""
        sessions = self._background_sessions if background else self.sessions
        async with sessions() as session, session.begin():
            session.sync_session.info[_SCOPE] = SYSTEM
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        for engine in self.engines:
            await engine.dispose()

    def upgrade(self, revision: str = "heads") -> None:
        """Run Alembic migrations (synchronously; call before the event loop serves requests)."""
        command.upgrade(alembic_config(self.url), revision)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pessimistic disconnect handling, paid only by connections that sat idle in the pool.

    `pool_pre_ping` pings on every checkout: on asyncpg that is a BEGIN and a ROLLBACK, two round trips
    added to every transaction. A connection checked in less than IDLE_PING_SECONDS ago was just
    working; one idle for longer (a database restart, a proxy's idle timeout) is pinged first, and a
    dead one is replaced before anyone uses it (`DisconnectionError` makes the pool retry).
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info["ionflux_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        since = record.info.get("ionflux_idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError(f"an idle pooled connection failed its ping: {type(exc).__name__}") from exc


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def scope_of(session: Session | AsyncSession) -> object:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    return sync.info.get(_SCOPE)


@event.listens_for(Session, "do_orm_execute")
def _scope_statements(state: ORMExecuteState) -> None:
    scope = state.session.info.get(_SCOPE)
    if scope is SYSTEM or not (state.is_select or state.is_update or state.is_delete):
        return
    if scope is None:
        if _touches_tenant_tables(state):
            raise TenancyViolation("tenant tables queried outside db.tenant() / db.system()")
        return
    # Always add the criterion in a tenant session: it is a no-op for statements without tenant
    # entities, and it also covers shapes the mapper list misses (count(*) with select_from, joins).
    state.statement = state.statement.options(
        with_loader_criteria(TenantScoped, lambda cls: cls.workspace_id == scope, include_aliases=True)
    )


def _touches_tenant_tables(state: ORMExecuteState) -> bool:
    if any(issubclass(mapper.class_, TenantScoped) for mapper in state.all_mappers):
        return True
    tenant_tables = {
        mapper.local_table for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantScoped)
    }
    statement = state.statement
    froms = statement.get_final_froms() if isinstance(statement, Select) else []
    return any(table in tenant_tables for f in froms for table in find_tables(f, include_joins=False))


@event.listens_for(Session, "before_flush")
def _stamp_new_rows(session: Session, _ctx: Any, _instances: Any) -> None:
    scope = session.info.get(_SCOPE)
    if scope is SYSTEM:
        return
    for obj in list(session.new) + list(session.dirty):
        if not isinstance(obj, TenantScoped):
            continue
        if scope is None:
            raise TenancyViolation("tenant rows written outside db.tenant() / db.system()")
        if getattr(obj, "workspace_id", None) in (None, scope):
            obj.workspace_id = str(scope)
        else:
            raise TenancyViolation("a row of another workspace was written in a tenant session")

