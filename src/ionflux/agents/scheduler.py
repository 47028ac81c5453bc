"""Cron schedules: every process may tick; a slot runs once because its run row is unique per
(configuration, "cron:<schedule>:<slot>") and the insert that loses the race does nothing.

Missed slots (the platform was down) coalesce into the latest one: no catch-up storm after an outage.
Cron expressions are read by `croniter` (time zones and DST included); the loop is ours rather than
APScheduler's because its job stores cannot make a slot unique across processes on our tenant tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ionflux.agents.context import Clock
from ionflux.agents.definitions import AgentDefinition, parse_definition
from ionflux.agents.models import AgentConfigurationRow, AgentDefinitionRow
from ionflux.agents.registry import AgentRegistry
from ionflux.agents.runs import enqueue_run
from ionflux.core.bus.envelope import format_time
from ionflux.core.db import Database
from ionflux.core.models import utcnow

log = logging.getLogger(__name__)


def aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def latest_slot(cron: str, timezone: str, now: datetime) -> datetime:
    """The latest time <= now that `cron` (read in `timezone`) fires at, in UTC."""
    start = (aware(now) + timedelta(microseconds=1)).astimezone(ZoneInfo(timezone))
    return aware(croniter(cron, start).get_prev(datetime))


class CronScheduler:
    def __init__(self, db: Database, registry: AgentRegistry, *, tick_seconds: float, clock: Clock = utcnow,
                 on_enqueued: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.registry = registry
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.on_enqueued = on_enqueued
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ionflux-agent-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.tick()
            await asyncio.sleep(self.tick_seconds)

    async def tick(self, now: datetime | None = None) -> int:
        """Enqueue the runs due at `now`; returns how many this call inserted (others may have won)."""
        now = aware(now or self.clock())
        cfg = AgentConfigurationRow
        async with self.db.system() as session:  # which configurations have schedules, across workspaces
            rows = (await session.execute(
                select(cfg.id, cfg.workspace_id, cfg.definition_id, cfg.schedule_cursor, cfg.created_at)
                .where(cfg.status == "active"))).all()
            stored = await self._stored_definitions(session, {(r.workspace_id, r.definition_id) for r in rows})
        inserted = 0
        for row in rows:
            definition = self.registry.builtin(row.definition_id) or stored.get((row.workspace_id, row.definition_id))
            if definition is None or not definition.schedules:
                continue
            cursor = aware(row.schedule_cursor or row.created_at)
            slots = [(i, latest_slot(s.cron, s.timezone, now)) for i, s in enumerate(definition.schedules)]
            due = [(i, slot) for i, slot in slots if cursor < slot <= now]
            if not due:
                continue
            async with self.db.tenant(row.workspace_id) as session:
                for i, slot in due:
                    run_id = await enqueue_run(
                        session, workspace_id=row.workspace_id, configuration_id=row.id, trigger_type="schedule",
                        trigger_key=f"cron:{i}:{format_time(slot)}", scheduled_for=slot, now=now,
                        input={"scheduled_for": format_time(slot)})
                    inserted += run_id is not None
                await session.execute(
                    update(cfg).where(cfg.id == row.id, or_(cfg.schedule_cursor.is_(None), cfg.schedule_cursor < now))
                    .values(schedule_cursor=now)
                    .execution_options(synchronize_session=False))
        if inserted:
            self.on_enqueued()
        return inserted

    async def _stored_definitions(
        self, session: AsyncSession, keys: set[tuple[str, str]]
    ) -> dict[tuple[str, str], AgentDefinition]:
        wanted = {d for _, d in keys if self.registry.builtin(d) is None}
        if not wanted:
            return {}
        rows = (await session.scalars(
            select(AgentDefinitionRow).where(AgentDefinitionRow.definition_id.in_(wanted)))).all()
        out: dict[tuple[str, str], AgentDefinition] = {}
        for r in rows:
            try:
                out[(r.workspace_id, r.definition_id)] = parse_definition(r.document)
            except Exception:  # a stored definition that no longer parses is skipped, not fatal to the tick
                log.warning("agent definition %s of workspace %s does not parse", r.definition_id, r.workspace_id)
        return out
