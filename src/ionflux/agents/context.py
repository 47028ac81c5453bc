"""What one agent run receives: its configuration, its trigger and the workspace's services as ports.

Agents never see a credential, a session or another workspace: every port is already bound to the
run's workspace (and memory to the configuration's own namespace).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ionflux.agents.definitions import AgentDefinition
from ionflux.agents.ports import EmailPort, EventPublisher, LLMPort, MemoryPort, ShopifyPort, StatePort, WhatsAppPort
from ionflux.core.bus import validate_topic
from ionflux.core.errors import InvalidRequest, ServiceUnavailable
from ionflux.core.models import utcnow

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Trigger:
    type: str  # event | schedule | manual
    event: dict[str, Any] | None = None  # the CloudEvents envelope, for event triggers
    scheduled_for: datetime | None = None
    input: dict[str, Any] = field(default_factory=dict)  # for manual runs

    @property
    def event_type(self) -> str | None:
        return str(self.event["type"]) if self.event else None

    @property
    def event_data(self) -> dict[str, Any]:
        data = (self.event or {}).get("data")
        return data if isinstance(data, dict) else {}


@dataclass
class AgentContext:
    workspace_id: str
    configuration_id: str
    run_id: str
    definition: AgentDefinition
    config: dict[str, Any]  # the configuration's effective_config
    llm: LLMPort
    email: EmailPort
    whatsapp: WhatsAppPort
    memory: MemoryPort
    shopify: ShopifyPort
    events: EventPublisher
    state: StatePort
    clock: Clock = utcnow
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("ionflux.agents.run"))
    _calls: int = 0

    def idempotency_key(self, purpose: str) -> str:
        """A key that is the same on every attempt of this run for the n-th call of `purpose`, so a
        retried run does not send the same mail twice (the services dedupe by it)."""
        self._calls += 1
        return f"agent-run:{self.run_id}:{purpose}:{self._calls}"


class AgentImplementation(Protocol):
    async def run(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]: ...


class BufferedEvents:
    """Events an agent publishes; the runner emits them in the transaction that records its success."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, type: str, data: dict[str, Any], *, subject: str | None = None) -> None:
        validate_topic(type)
        if not isinstance(data, dict):
            raise InvalidRequest("event data must be a JSON object", field="data")
        self.pending.append((type, data, subject))


class Unavailable:
    """A port for a service this deployment does not run: every use says so."""

    def __init__(self, service: str) -> None:
        self._service = service

    @property
    def namespace(self) -> str:
        raise ServiceUnavailable(f"the {self._service} service is not available in this deployment")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)

        async def unavailable(*_: Any, **__: Any) -> Any:
            raise ServiceUnavailable(
                f"the {self._service} service is not available in this deployment ({name} was called)")

        return unavailable
