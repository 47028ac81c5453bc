"""Event triggers: one idempotent bus consumer per distinct topic pattern of the known definitions.

A consumer named after its pattern (`agents.trigger.<hash>`) records one run per (configuration, event
id) in the delivery's own transaction, so a redelivered event or a second consumer matching the same
event never runs a configuration twice. Patterns of definitions stored at runtime are subscribed when
they are stored here, and picked up by other processes on the next refresh.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Iterable

from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from ionflux.agents.context import Clock
from ionflux.agents.definitions import AgentDefinition, parse_definition
from ionflux.agents.models import AgentConfigurationRow, AgentDefinitionRow
from ionflux.agents.registry import AgentRegistry
from ionflux.agents.runs import enqueue_run
from ionflux.agents.scheduler import aware
from ionflux.core.bus import Event, EventBus
from ionflux.core.db import Database
from ionflux.core.models import utcnow

log = logging.getLogger(__name__)
_ACTIVE = "ionflux.agents.active_configurations"
SOURCE_PREFIX = "ionflux.agents/"  # events an agent run publishes carry its configuration id here


def consumer_name(pattern: str) -> str:
    return "agents.trigger." + hashlib.sha256(pattern.encode()).hexdigest()[:16]


class EventTriggers:
    def __init__(self, db: Database, bus: EventBus, registry: AgentRegistry, *, clock: Clock = utcnow,
                 on_enqueued: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.bus = bus
        self.registry = registry
        self.clock = clock
        self.on_enqueued = on_enqueued
        self._subscribed: set[str] = set()

    def ensure(self, patterns: Iterable[str]) -> None:
        for pattern in patterns:
            if pattern in self._subscribed:
                continue
            self.bus.subscribe(consumer_name(pattern), [pattern], functools.partial(self._handle, pattern))
            self._subscribed.add(pattern)

    async def refresh(self) -> None:
        """Subscribe the patterns of every stored definition (any workspace) not yet subscribed here."""
        self.ensure(p for d in self.registry.builtins() for p in d.event_topics)
        async with self.db.system() as session:
            documents = (await session.scalars(select(AgentDefinitionRow.document))).all()
        for document in documents:
            try:
                self.ensure(parse_definition(document).event_topics)
            except Exception:
                log.warning("a stored agent definition does not parse; its triggers are not subscribed")

    async def _handle(self, pattern: str, event: Event, session: AsyncSession) -> None:
        # The bus hands a consumer several events of a workspace in one transaction: the active
        # configurations (and their definitions) are read once for all of them.
        cached = session.info.get(_ACTIVE)
        if cached is None:
            configurations = (await session.scalars(
                select(AgentConfigurationRow).where(AgentConfigurationRow.status == "active"))).all()
            definitions = await self._definitions(session, {c.definition_id for c in configurations})
            session.info[_ACTIVE] = cached = (configurations, definitions)
        configurations, definitions = cached
        if not configurations:
            return
        enqueued = 0
        for cfg in configurations:
            definition = definitions.get(cfg.definition_id)
            if definition is None or pattern not in definition.event_topics:
                continue
            if event.source == SOURCE_PREFIX + cfg.id:  # never trigger a configuration on its own events
                continue
            if aware(event.time) < aware(cfg.created_at):  # events from before the configuration existed
                continue
            run_id = await enqueue_run(
                session, workspace_id=event.workspace_id, configuration_id=cfg.id, trigger_type="event",
                trigger_key=f"event:{event.id}", trigger_event_id=event.id, now=self.clock(),
                input={"event": event.to_envelope()})
            enqueued += run_id is not None
        if enqueued:
            sa_event.listen(session.sync_session, "after_commit", self._after_commit, once=True)

    def _after_commit(self, _session: Session) -> None:
        self.on_enqueued()

    async def _definitions(self, session: AsyncSession, ids: set[str]) -> dict[str, AgentDefinition]:
        found = {i: d for i in ids if (d := self.registry.builtin(i)) is not None}
        missing = ids - set(found)
        if missing:
            rows = (await session.scalars(
                select(AgentDefinitionRow).where(AgentDefinitionRow.definition_id.in_(missing)))).all()
            for row in rows:
                found[row.definition_id] = parse_definition(row.document)
        return found
