"""Which definitions ship with IONFLUX and which code runs each definition in this process."""

from __future__ import annotations

from collections.abc import Callable

from ionflux.agents.context import AgentImplementation
from ionflux.agents.definitions import AgentDefinition

ImplementationFactory = Callable[[], AgentImplementation]


class AgentRegistry:
    def __init__(self) -> None:
        self._builtin: dict[str, AgentDefinition] = {}
        self._implementations: dict[str, ImplementationFactory] = {}

    def add_builtin(self, definition: AgentDefinition, implementation: ImplementationFactory) -> None:
        self._builtin[definition.id] = definition
        self._implementations[definition.id] = implementation

    def add_implementation(self, definition_id: str, implementation: ImplementationFactory) -> None:
        """Run `implementation` for configurations of a (workspace-stored) definition with this id."""
        self._implementations[definition_id] = implementation

    def builtin(self, definition_id: str) -> AgentDefinition | None:
        return self._builtin.get(definition_id)

    def builtins(self) -> list[AgentDefinition]:
        return list(self._builtin.values())

    def implementation(self, definition_id: str) -> AgentImplementation | None:
        factory = self._implementations.get(definition_id)
        return factory() if factory is not None else None
