"""The contract every IONFLUX service (LLM, email, messaging, memory, integrations, agents) plugs in by.

A service is built once per process from the `Platform`; its constructor subscribes its consumers on
`platform.bus` (so they exist before the bus starts), `routers()` gives its HTTP surface, and
`start()`/`stop()` run whatever it keeps going beside them (schedulers, pools, provider clients).
Services find each other only through `platform.services[name]` and that service's small public
interface, never through its internals.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from starlette.routing import Route

if TYPE_CHECKING:
    from ionflux.core.platform import Platform


class Service:
    name: ClassVar[str] = ""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def routers(self) -> list[APIRouter]:
        return []

    def hot_routes(self) -> list[Route]:
        """Latency-critical endpoints, answered before FastAPI's middleware and routers (`core.hot_path`):
        no FastAPI routing or dependency solving (`served_directly` makes them from API routes, which
        stay documented). They parse and authenticate the request themselves and raise `IonfluxError`s
        like any other route (the app's error handlers, request ids and body limits apply)."""
        return []

    def body_limits(self) -> dict[str, int]:
        """Request-body limits (bytes) by path prefix where this service needs more (or less) than
        the app-wide IONFLUX_MAX_BODY_BYTES."""
        return {}

    async def start(self) -> None:
        """Called after the platform (database, vault, bus) has started."""

    async def stop(self) -> None:
        """Called before the platform stops."""


def served_directly(routers: Iterable[APIRouter], *wanted: str) -> list[Route]:
    """Starlette routes for the named API routes (`"POST /v1/chat/completions"`), for `hot_routes`: the
    same endpoints, matched first and called without FastAPI's middleware, routing and dependency solving. The API
    routes stay in their routers for the OpenAPI schema (shadowed, never reached). Each endpoint must
    take only the `Request` and return a `Response`."""
    found: dict[str, Route] = {}
    for router in routers:
        for route in router.routes:
            if not isinstance(route, APIRoute):
                continue
            for method in route.methods or ():
                key = f"{method} {route.path}"
                if key not in wanted:
                    continue
                params = list(inspect.signature(route.endpoint).parameters.values())
                if len(params) != 1 or params[0].annotation not in (Request, "Request"):
                    raise TypeError(f"{key}: a directly served endpoint takes only the Request")
                found[key] = Route(route.path, route.endpoint, methods=[method])
    missing = [key for key in wanted if key not in found]
    if missing:
        raise LookupError(f"no API route for {', '.join(missing)}")
    return [found[key] for key in wanted]

