"""The reference agents that ship with IONFLUX: their blueprints (YAML beside the code) and implementations."""

from __future__ import annotations

from importlib import resources

from ionflux.agents.definitions import parse_definition
from ionflux.agents.registry import AgentRegistry, ImplementationFactory


def _builtins() -> list[tuple[str, ImplementationFactory]]:
    from ionflux.agents.builtin.email_wizard import EmailWizard
    from ionflux.agents.builtin.revenue_tracker import RevenueTracker
    from ionflux.agents.builtin.sales_sentinel import SalesSentinel

    return [("sales_sentinel.yaml", SalesSentinel), ("revenue_tracker.yaml", RevenueTracker),
            ("email_wizard.yaml", EmailWizard)]


def register_builtins(registry: AgentRegistry) -> None:
    """Add every built-in definition (from its YAML blueprint) and its implementation to `registry`."""
    for blueprint, implementation in _builtins():
        text = resources.files(__package__).joinpath(blueprint).read_text(encoding="utf-8")
        registry.add_builtin(parse_definition(text), implementation)
