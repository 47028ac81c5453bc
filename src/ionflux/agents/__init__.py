"""The AgentService bridge: agent definitions and configurations, triggers, runs, and the context agents get."""

from ionflux.agents.context import AgentContext, AgentImplementation, Trigger
from ionflux.agents.definitions import AgentDefinition, parse_definition

__all__ = ["AgentContext", "AgentDefinition", "AgentImplementation", "Trigger", "parse_definition"]
