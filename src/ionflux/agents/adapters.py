"""The ports of an in-process agent run, built over the services this process runs
(`platform.services[name]` and each service's public interface). A service that is not running
gives an `Unavailable` port whose every call says so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ionflux.agents.context import Unavailable
from ionflux.agents.definitions import AgentDefinition
from ionflux.agents.models import AgentConfigurationRow

if TYPE_CHECKING:
    from ionflux.agents.runner import PortsFactory
    from ionflux.core.platform import Platform

PORTS = ("llm", "email", "whatsapp", "memory", "shopify")


def platform_ports(platform: Platform) -> PortsFactory:
    def build(workspace_id: str, cfg: AgentConfigurationRow, definition: AgentDefinition) -> dict[str, Any]:
        return {name: Unavailable(name) for name in PORTS}

    return build
