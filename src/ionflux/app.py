"""The FastAPI app factory: core middleware and error mapping, plus each service's routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from ionflux import __version__
from ionflux.core.error_handlers import install_error_handlers
from ionflux.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from ionflux.core.platform import Platform


def _platform_routers() -> list[APIRouter]:
    from ionflux.core.bus.api import router as events_router
    from ionflux.core.vault.api import router as credentials_router
    from ionflux.core.webhooks.api import receiver as webhook_receiver
    from ionflux.core.webhooks.api import router as webhooks_router

    return [credentials_router, events_router, webhook_receiver, webhooks_router]


# Each service contributes its routers here; `--only` picks among these names. Imports are lazy so a
# process that serves one service never imports the others (start-up time and memory).
SERVICES: dict[str, Callable[[], list[APIRouter]]] = {
    "platform": _platform_routers,
}


def resolve_services(only: Iterable[str] | None) -> list[str]:
    if not only:
        return list(SERVICES)
    chosen = [name.strip() for name in only if name.strip()]
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    return chosen


def create_app(
    platform: Platform,
    *,
    only: Iterable[str] | None = None,
    manage_lifecycle: bool = True,
    run_worker: bool = True,
) -> FastAPI:
    """Build the app around a platform. With `manage_lifecycle`, the app starts and stops it, and
    `run_worker` says whether this process also runs the outbox relay and the consumers."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await platform.start(relay=run_worker, consumers=run_worker)
        try:
            yield
        finally:
            if manage_lifecycle:
                await platform.stop()

    app = FastAPI(title="IONFLUX", version=__version__, lifespan=lifespan)
    app.state.platform = platform
    install_error_handlers(app)
    from ionflux.core.platform_api import router as platform_router

    app.include_router(platform_router)
    for name in resolve_services(only):
        for router in SERVICES[name]():
            app.include_router(router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=platform.settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=platform.metrics)
    return app
