"""Recording runs: at most one per (configuration, trigger key), whichever process inserts it first;
and the per-configuration state store whose writes commit with a run's success."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.agents.models import AgentRunRow, AgentStateRow
from ionflux.core.db import Database
from ionflux.core.errors import InvalidRequest
from ionflux.core.models import new_id


async def enqueue_run(
    session: AsyncSession, *, workspace_id: str, configuration_id: str, trigger_type: str, trigger_key: str,
    now: datetime, trigger_event_id: str | None = None, scheduled_for: datetime | None = None,
    input: dict[str, Any] | None = None,
) -> str | None:
    """Insert a queued run unless one with this trigger key exists; its id, or None if it was a duplicate."""
    values: dict[str, Any] = {
        "id": new_id(), "workspace_id": workspace_id, "configuration_id": configuration_id,
        "trigger_type": trigger_type, "trigger_key": trigger_key, "trigger_event_id": trigger_event_id,
        "scheduled_for": scheduled_for, "input": input or {}, "status": "queued", "attempts": 0,
        "next_attempt_at": now, "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(AgentRunRow).values(**values).on_conflict_do_nothing(
        index_elements=["configuration_id", "trigger_key"])
    result = await session.execute(stmt)
    return str(values["id"]) if getattr(result, "rowcount", 0) == 1 else None


class BufferedState:
    """`StatePort` for one run: reads see committed state plus this run's own writes; writes are kept
    until `flush` in the transaction that records the run's success (a failed run leaves no trace)."""

    _DELETED: dict[str, Any] = {}

    def __init__(self, db: Database, workspace_id: str, configuration_id: str) -> None:
        self._db = db
        self._workspace_id = workspace_id
        self._configuration_id = configuration_id
        self._pending: dict[str, dict[str, Any]] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        if key in self._pending:
            value = self._pending[key]
            return None if value is self._DELETED else dict(value)
        async with self._db.tenant(self._workspace_id) as session:
            row = await session.get(AgentStateRow, (self._configuration_id, key))
            return dict(row.value) if row is not None else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        if not key or len(key) > 200:
            raise InvalidRequest("a state key is 1-200 characters", field="key")
        if not isinstance(value, dict):
            raise InvalidRequest("a state value is a JSON object", field="value")
        self._pending[key] = dict(value)

    def delete(self, key: str) -> None:
        self._pending[key] = self._DELETED

    async def items(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        async with self._db.tenant(self._workspace_id) as session:
            rows = (await session.scalars(
                select(AgentStateRow).where(AgentStateRow.configuration_id == self._configuration_id,
                                            AgentStateRow.key.startswith(prefix, autoescape=True))
                .order_by(AgentStateRow.key))).all()
        merged = {row.key: dict(row.value) for row in rows}
        for key, value in self._pending.items():
            if key.startswith(prefix):
                if value is self._DELETED:
                    merged.pop(key, None)
                else:
                    merged[key] = dict(value)
        return sorted(merged.items())

    async def flush(self, session: AsyncSession) -> None:
        for key, value in self._pending.items():
            if value is self._DELETED:
                await session.execute(delete(AgentStateRow).where(
                    AgentStateRow.configuration_id == self._configuration_id, AgentStateRow.key == key))
                continue
            row = await session.get(AgentStateRow, (self._configuration_id, key))
            if row is None:
                session.add(AgentStateRow(configuration_id=self._configuration_id, key=key, value=value))
            else:
                row.value = value
        self._pending.clear()
