"""The app's ASGI entry: IONFLUX's own middleware, then the hot routes, then FastAPI.

Per-call routes (the webhook receiver, the LLM gateway's chat, embeddings and requests) run on every
delivery and every model call. Through FastAPI each request also crossed six middleware layers
(`ServerErrorMiddleware`, telemetry, FastAPI's body limit, `ExceptionMiddleware`, the exit-stack
middleware, the router's scan of every route) that these endpoints need none of: measured on the LLM
gateway at 50 clients, about a sixth of the gateway's CPU. `IonfluxApp` answers them straight after
IONFLUX's own request-context and body-limit middleware, with the same error handlers FastAPI would
use, and hands everything else to FastAPI unchanged.
"""

from __future__ import annotations

import inspect
import logging

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ionflux.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from ionflux.core.observability import Metrics

log = logging.getLogger("ionflux.errors")


class IonfluxApp(FastAPI):
    """FastAPI whose middleware stack is entered through `HotRoutes` (set with `serve_hot`)."""

    _hot: list[Route]
    _limits: tuple[int, dict[str, int]]
    _metrics: Metrics | None = None

    def serve_hot(self, routes: list[Route], metrics: Metrics, max_body_bytes: int,
                  body_limits: dict[str, int]) -> None:
        self._hot, self._metrics, self._limits = list(routes), metrics, (max_body_bytes, body_limits)

    @property
    def hot_routes(self) -> list[Route]:
        return list(getattr(self, "_hot", []))

    def build_middleware_stack(self) -> ASGIApp:
        app: ASGIApp = super().build_middleware_stack()
        if self._metrics is None:
            return app
        app = HotRoutes(self, self._hot, app)
        app = BodySizeLimitMiddleware(app, max_bytes=self._limits[0], overrides=self._limits[1])
        return RequestContextMiddleware(app, metrics=self._metrics)


class HotRoutes:
    """Serves a request that one of `routes` matches fully; passes every other one to `fallback`."""

    def __init__(self, app: FastAPI, routes: list[Route], fallback: ASGIApp) -> None:
        self.app = app
        self.routes = routes
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route in self.routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    scope["route"] = route
                    await self._serve(route, scope, receive, send)
                    return
        await self.fallback(scope, receive, send)

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await route.endpoint(request)
        except Exception as exc:  # every failure becomes the app's error format
            handlers = self.app.exception_handlers
            handler = next((handlers[cls] for cls in type(exc).__mro__ if cls in handlers), None)
            if handler is None:
                log.exception("unhandled error: %s", type(exc).__name__)
                response = JSONResponse({"error": {"code": "INTERNAL_ERROR", "message": "internal error"}},
                                        status_code=500)
            else:
                answer = handler(request, exc)
                response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)
