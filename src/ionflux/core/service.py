"""The contract every IONFLUX service (LLM, email, messaging, memory, integrations, agents) plugs in by.

A service is built once per process from the `Platform`; its constructor subscribes its consumers on
`platform.bus` (so they exist before the bus starts), `routers()` gives its HTTP surface, and
`start()`/`stop()` run whatever it keeps going beside them (schedulers, pools, provider clients).
Services find each other only through `platform.services[name]` and that service's small public
interface, never through its internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from fastapi import APIRouter
from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from ionflux.core.platform import Platform


class Service:
    name: ClassVar[str] = ""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def routers(self) -> list[APIRouter]:
        return []

    def hot_routes(self) -> list[BaseRoute]:
        """Latency-critical endpoints served by plain Starlette routes, matched before every API router:
        no FastAPI routing or dependency solving. They take a `Request`, parse and authenticate it
        themselves, and raise `IonfluxError`s like any other route (the app's handlers apply)."""
        return []

    def body_limits(self) -> dict[str, int]:
        """Request-body limits (bytes) by path prefix where this service needs more (or less) than
        the app-wide IONFLUX_MAX_BODY_BYTES."""
        return {}

    async def start(self) -> None:
        """Called after the platform (database, vault, bus) has started."""

    async def stop(self) -> None:
        """Called before the platform stops."""
