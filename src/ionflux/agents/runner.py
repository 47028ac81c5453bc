"""Executing queued runs: one runner at a time per configuration (a lease in the database), retries with
exponential backoff, and the breaker that pauses a configuration after N consecutive failed attempts.

Any number of processes may run a `RunExecutor` on one database: a configuration is leased with a
compare-and-set UPDATE, so its runs execute one after another, in one process, in trigger order.
Finding due work crosses workspaces, so that one query uses a system session (like the outbox relay);
everything a run reads or writes goes through its workspace's tenant session.
Written here rather than on a task queue (Celery, arq, Dramatiq): runs must live in the platform's own
database, under its tenancy, in the same transactions as the events that trigger them and the state and
events they produce, with no broker to add to the embedded deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from ionflux.agents.context import AgentContext, BufferedEvents, Clock, Trigger
from ionflux.agents.definitions import AgentDefinition
from ionflux.agents.models import AgentConfigurationRow, AgentRunRow
from ionflux.agents.registry import AgentRegistry
from ionflux.agents.runs import BufferedState
from ionflux.agents.schema import validate
from ionflux.agents.settings import AgentSettings
from ionflux.agents.store import get_definition
from ionflux.core.bus import emit
from ionflux.core.db import Database
from ionflux.core.errors import IonfluxError
from ionflux.core.models import new_id, utcnow
from ionflux.core.waiting import wake_or_timeout

log = logging.getLogger(__name__)
PortsFactory = Callable[[str, AgentConfigurationRow, AgentDefinition], dict[str, Any]]
PAUSED_TOPIC = "platform.agents.events.configurations.paused"
SOURCE = "ionflux.agents"


def backoff_seconds(settings: AgentSettings, attempt: int) -> float:
    return float(min(settings.retry_max_seconds, settings.retry_base_seconds * 2 ** max(0, attempt - 1)))


class RunExecutor:
    def __init__(self, db: Database, registry: AgentRegistry, settings: AgentSettings, ports: PortsFactory,
                 *, clock: Clock = utcnow) -> None:
        self.db = db
        self.registry = registry
        self.settings = settings
        self.ports = ports
        self.clock = clock
        self.owner = new_id()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._active: dict[str, asyncio.Task[int]] = {}

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="ionflux-agent-runner")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._active.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    async def run_due(self) -> int:
        """Claim every configuration with due runs and run them to completion (tests and one-shot use)."""
        claimed = await self._claim(self.settings.concurrency)
        counts = await asyncio.gather(*(self._drain(ws, cfg) for ws, cfg in claimed))
        return sum(counts)

    async def _loop(self) -> None:
        while True:
            try:
                free = self.settings.concurrency - len(self._active)
                for ws, cfg in await self._claim(free) if free > 0 else []:
                    task = asyncio.create_task(self._drain(ws, cfg))
                    self._active[cfg] = task
                    task.add_done_callback(functools.partial(self._finished, cfg))
            except Exception:
                log.exception("agent runner: looking for due runs failed")
            await wake_or_timeout(self._wake, self.settings.runner_poll_seconds)
            self._wake.clear()

    def _finished(self, cfg_id: str, _task: asyncio.Task[int]) -> None:
        self._active.pop(cfg_id, None)
        self._wake.set()  # a slot is free: look for more work now

    async def _claim(self, limit: int) -> list[tuple[str, str]]:
        now = self.clock()
        cfg = AgentConfigurationRow
        async with self.db.system() as session:
            rows = (await session.execute(
                select(AgentRunRow.workspace_id, AgentRunRow.configuration_id).distinct()
                .join(cfg, cfg.id == AgentRunRow.configuration_id)
                .where(AgentRunRow.status.in_(("queued", "running")), AgentRunRow.next_attempt_at <= now,
                       cfg.status == "active", or_(cfg.lease_until.is_(None), cfg.lease_until < now))
                .limit(limit * 4))).all()
        claimed: list[tuple[str, str]] = []
        for ws, cfg_id in rows:
            if len(claimed) >= limit or cfg_id in self._active:
                continue
            if await self._lease(ws, cfg_id, now):
                claimed.append((ws, cfg_id))
        return claimed

    async def _lease(self, ws: str, cfg_id: str, now: datetime, *, renew: bool = False) -> bool:
        """Take (or, with `renew`, extend our own) lease on a configuration: compare-and-set, so exactly one
        runner anywhere holds it. A fresh lease re-queues runs left `running` by a runner that died."""
        cfg = AgentConfigurationRow
        held = cfg.lease_owner == self.owner if renew else or_(cfg.lease_until.is_(None), cfg.lease_until < now)
        async with self.db.tenant(ws) as session:
            result = await session.execute(
                update(cfg).where(cfg.id == cfg_id, held)
                .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.settings.lease_seconds))
                .execution_options(synchronize_session=False))
            won = getattr(result, "rowcount", 0) == 1
            if won and not renew:
                await session.execute(
                    update(AgentRunRow).where(AgentRunRow.configuration_id == cfg_id, AgentRunRow.status == "running")
                    .values(status="queued").execution_options(synchronize_session=False))
        return won

    async def _drain(self, ws: str, cfg_id: str) -> int:
        done = 0
        try:
            while await self._lease(ws, cfg_id, self.clock(), renew=True):
                run_id = await self._next_due(ws, cfg_id)
                if run_id is None:
                    break
                await self._execute(ws, cfg_id, run_id)
                done += 1
        finally:
            with contextlib.suppress(Exception):
                async with self.db.tenant(ws) as session:
                    await session.execute(
                        update(AgentConfigurationRow)
                        .where(AgentConfigurationRow.id == cfg_id, AgentConfigurationRow.lease_owner == self.owner)
                        .values(lease_owner=None, lease_until=None).execution_options(synchronize_session=False))
        return done

    async def _next_due(self, ws: str, cfg_id: str) -> str | None:
        async with self.db.tenant(ws) as session:
            return await session.scalar(
                select(AgentRunRow.id).where(
                    AgentRunRow.configuration_id == cfg_id, AgentRunRow.status == "queued",
                    AgentRunRow.next_attempt_at <= self.clock())
                .order_by(AgentRunRow.next_attempt_at, AgentRunRow.created_at).limit(1))

    async def _execute(self, ws: str, cfg_id: str, run_id: str) -> None:
        async with self.db.tenant(ws) as session:
            cfg = await session.get(AgentConfigurationRow, cfg_id)
            run = await session.get(AgentRunRow, run_id)
            if cfg is None or run is None or run.status != "queued":
                return
            if cfg.status != "active":
                run.status, run.error, run.finished_at = "skipped", f"configuration is {cfg.status}", self.clock()
                return
            run.status, run.attempts = "running", run.attempts + 1
            run.started_at = run.started_at or self.clock()
            trigger = _trigger(run)
            config = dict(cfg.effective_config)
            try:
                definition: AgentDefinition | None = await get_definition(session, self.registry, cfg.definition_id)
            except IonfluxError:
                definition = None
        events = BufferedEvents()
        state = BufferedState(self.db, ws, cfg_id)
        started = time.monotonic()
        error: str | None = None
        output: dict[str, Any] = {}
        try:
            if definition is None:
                raise LookupError(f"the definition {cfg.definition_id!r} no longer exists")
            implementation = self.registry.implementation(definition.id)
            if implementation is None:
                raise LookupError(f"no implementation of {definition.id!r} is installed in this process")
            ctx = AgentContext(workspace_id=ws, configuration_id=cfg_id, run_id=run_id, definition=definition,
                               config=config, events=events, state=state, clock=self.clock,
                               **self.ports(ws, cfg, definition))
            async with asyncio.timeout(self.settings.run_timeout_seconds):
                output = await implementation.run(ctx, trigger)
            if not isinstance(output, dict):
                raise TypeError(f"an agent returns a JSON object, got {type(output).__name__}")
            if definition.outputs:
                validate(definition.outputs, output, field="output")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = _describe(exc)
            log.warning("agent run %s of configuration %s failed: %s", run_id, cfg_id, error)
        duration_ms = int((time.monotonic() - started) * 1000)
        await self._record(ws, cfg_id, run_id, error=error, output=output, duration_ms=duration_ms,
                           events=events, state=state)

    async def _record(self, ws: str, cfg_id: str, run_id: str, *, error: str | None, output: dict[str, Any],
                      duration_ms: int, events: BufferedEvents, state: BufferedState) -> None:
        now = self.clock()
        async with self.db.tenant(ws) as session:
            cfg = await session.get(AgentConfigurationRow, cfg_id)
            run = await session.get(AgentRunRow, run_id)
            if cfg is None or run is None:
                return
            run.finished_at, run.duration_ms = now, duration_ms
            if error is None:
                run.status, run.output, run.error = "succeeded", output, None
                cfg.consecutive_failures = 0
                await state.flush(session)
                for topic, data, subject in events.pending:
                    emit(session, type=topic, data=data, subject=subject, source=f"{SOURCE}/{cfg_id}")
                _finished(session, cfg, run)
                return
            run.error = error
            cfg.consecutive_failures += 1
            if cfg.consecutive_failures >= self.settings.breaker_threshold:
                run.status = "failed"
                await self._pause(session, cfg, run, error)
            elif run.attempts < self.settings.max_attempts:
                run.status = "queued"
                run.next_attempt_at = now + timedelta(seconds=backoff_seconds(self.settings, run.attempts))
                return
            else:
                run.status = "failed"
            _finished(session, cfg, run)

    async def _pause(self, session: Any, cfg: AgentConfigurationRow, run: AgentRunRow, error: str) -> None:
        reason = f"paused after {cfg.consecutive_failures} consecutive failed attempts; last error: {error}"
        cfg.status, cfg.paused_reason = "paused", reason[:2000]
        await session.execute(
            update(AgentRunRow).where(AgentRunRow.configuration_id == cfg.id, AgentRunRow.status == "queued")
            .values(status="skipped", error="configuration paused by the breaker")
            .execution_options(synchronize_session=False))
        emit(session, type=PAUSED_TOPIC, subject=cfg.id, source=SOURCE, data={
            "configuration_id": cfg.id, "definition_id": cfg.definition_id, "reason": cfg.paused_reason,
            "consecutive_failures": cfg.consecutive_failures, "last_run_id": run.id, "last_error": error,
        })


def _finished(session: Any, cfg: AgentConfigurationRow, run: AgentRunRow) -> None:
    """`platform.agents.events.runs.succeeded|failed`: a run reached its final status (for dashboards)."""
    emit(session, type=f"platform.agents.events.runs.{run.status}", subject=run.id, source=SOURCE, data={
        "run_id": run.id, "configuration_id": cfg.id, "definition_id": cfg.definition_id,
        "trigger_type": run.trigger_type, "trigger_event_id": run.trigger_event_id, "attempts": run.attempts,
        "duration_ms": run.duration_ms, "error": run.error})


def _trigger(run: AgentRunRow) -> Trigger:
    data = dict(run.input or {})
    return Trigger(type=run.trigger_type, event=data.get("event"), scheduled_for=run.scheduled_for,
                   input=dict(data.get("input") or {}))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, IonfluxError):
        return f"{exc.code}: {exc.message}"[:2000]
    if isinstance(exc, TimeoutError):
        return "the run took longer than its timeout"
    return f"{type(exc).__name__}: {exc}"[:2000]
