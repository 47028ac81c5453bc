"""The app factory: core middleware and error mapping, the hot routes, and each service's routers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from ionflux import __version__
from ionflux.core.error_handlers import install_error_handlers
from ionflux.core.hot_path import IonfluxApp
from ionflux.core.platform import Platform
from ionflux.services import build_services, platform_running, resolve_services


def create_app(
    platform: Platform,
    *,
    only: Iterable[str] | None = None,
    manage_lifecycle: bool = True,
    run_worker: bool = True,
) -> IonfluxApp:
    """Build the app around a platform and the chosen services. With `manage_lifecycle` the app starts
    and stops them; `run_worker` says whether this process also runs the outbox relay and consumers."""
    services = build_services(platform, resolve_services(only))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not manage_lifecycle:
            yield
            return
        async with platform_running(platform, services, relay=run_worker, consumers=run_worker):
            # What start-up built (modules, models, routes, services) lives as long as the process: move
            # it out of the cyclic collector's way, so a full collection under load walks only what
            # requests allocate (otherwise each one walks the whole heap: pauses of tens of ms).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                # The webhook pipeline (built on first use) holds its own inbox connection/thread.
                pipeline = getattr(app.state, "webhooks", None)
                if pipeline is not None:
                    await pipeline.inbox.close()

    # FastAPI's native OpenTelemetry looks for configured providers on every request: off unless asked
    # for (IONFLUX_OTEL); IONFLUX's own metrics and request ids do not depend on it.
    telemetry: TelemetryConfig | None = None
    if not platform.settings.otel:
        telemetry = {"tracing": False, "metrics": False, "logs": False}
    app = IonfluxApp(title="IONFLUX", version=__version__, lifespan=lifespan, telemetry=telemetry)
    app.state.platform = platform
    install_error_handlers(app)
    for service in services:
        for router in service.routers():
            app.include_router(router)
    body_limits = {prefix: limit for service in services for prefix, limit in service.body_limits().items()}
    app.serve_hot([route for service in services for route in service.hot_routes()], platform.metrics,
                  platform.settings.max_body_bytes, body_limits)
    return app
