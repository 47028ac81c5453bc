"""`AgentService`: the agent bridge plugged into IONFLUX (routers, event triggers, cron, run executor)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from sqlalchemy import select

from ionflux.agents.adapters import platform_ports
from ionflux.agents.context import Clock
from ionflux.agents.loopback import Loopback
from ionflux.agents.models import AgentRunRow
from ionflux.agents.namespaces import Resolver, namespace_resolver
from ionflux.agents.registry import AgentRegistry
from ionflux.agents.runner import PortsFactory, RunExecutor
from ionflux.agents.runs import enqueue_run
from ionflux.agents.scheduler import CronScheduler
from ionflux.agents.settings import AgentSettings
from ionflux.agents.store import run_view
from ionflux.agents.triggers import EventTriggers
from ionflux.core.errors import NotFound
from ionflux.core.models import new_id, utcnow
from ionflux.core.service import Service

if TYPE_CHECKING:
    from ionflux.core.platform import Platform

log = logging.getLogger(__name__)
FINAL = ("succeeded", "failed", "skipped")


class AgentService(Service):
    name = "agents"

    def __init__(self, platform: Platform, *, settings: AgentSettings | None = None, clock: Clock = utcnow) -> None:
        super().__init__(platform)
        self.settings = settings or AgentSettings()
        self.clock = clock
        self.registry = AgentRegistry()
        from ionflux.agents.builtin import register_builtins

        register_builtins(self.registry)
        self.loopback = Loopback(platform)
        self.ports: PortsFactory = platform_ports(platform, self.loopback)
        self.executor = RunExecutor(platform.db, self.registry, self.settings, self._ports, clock=clock)
        self.scheduler = CronScheduler(platform.db, self.registry, tick_seconds=self.settings.scheduler_tick_seconds,
                                       clock=clock, on_enqueued=self.executor.wake)
        self.triggers = EventTriggers(platform.db, platform.bus, self.registry, clock=clock,
                                      on_enqueued=self.executor.wake)
        self.triggers.ensure(p for d in self.registry.builtins() for p in d.event_topics)
        self._refresh_task: asyncio.Task[None] | None = None

    def use_clock(self, clock: Clock) -> None:
        """One clock for runs, cron and triggers (tests move it instead of waiting)."""
        self.clock = self.executor.clock = self.scheduler.clock = self.triggers.clock = clock

    def _ports(self, *args: Any) -> dict[str, Any]:
        return self.ports(*args)  # looked up per run, so tests and the demo can swap `self.ports`

    def routers(self) -> list[APIRouter]:
        from ionflux.agents.api import router

        return [router]

    def namespace_resolver(self) -> Resolver:
        return namespace_resolver(self.platform.services.get("memory"))

    async def start(self) -> None:
        await self.triggers.refresh()
        self.executor.start()
        self.scheduler.start()
        self._refresh_task = asyncio.create_task(self._refresh_forever(), name="ionflux-agent-triggers")

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            await asyncio.gather(self._refresh_task, return_exceptions=True)
        await self.scheduler.stop()
        await self.executor.stop()
        await self.loopback.aclose()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.trigger_refresh_seconds)
            with contextlib.suppress(Exception):
                await self.triggers.refresh()

    async def run_now(self, workspace_id: str, configuration_id: str, input: dict[str, Any],
                      idempotency_key: str | None, *, wait: bool) -> dict[str, Any]:
        """Queue a manual run (once per idempotency key) and return it, finished if `wait` and in time."""
        key = f"manual:{idempotency_key or new_id()}"
        async with self.platform.db.tenant(workspace_id) as session:
            await enqueue_run(session, workspace_id=workspace_id, configuration_id=configuration_id,
                              trigger_type="manual", trigger_key=key, now=self.clock(), input={"input": input})
        self.executor.wake()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.settings.manual_wait_seconds if wait else 0)
        delay = 0.01
        while True:
            async with self.platform.db.tenant(workspace_id) as session:
                row = await session.scalar(select(AgentRunRow).where(
                    AgentRunRow.configuration_id == configuration_id, AgentRunRow.trigger_key == key))
                if row is None:
                    raise NotFound(f"configuration {configuration_id!r} was deleted", field="configuration_id")
                view = run_view(row)
            if view["status"] in FINAL or loop.time() >= deadline:
                return view
            await asyncio.sleep(delay)  # polling the run's row, with a deadline
            delay = min(delay * 2, 0.25)
