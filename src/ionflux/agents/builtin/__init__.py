"""The reference agents that ship with IONFLUX: their blueprints (YAML beside the code) and implementations."""

from __future__ import annotations

from ionflux.agents.registry import AgentRegistry


def register_builtins(registry: AgentRegistry) -> None:
    """Add every built-in definition and its implementation to `registry`."""
