"""The platform's own endpoints as a service: credentials, events, webhook intake and deliveries."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import Route

from ionflux.core.service import Service, served_directly


class PlatformService(Service):
    name = "platform"

    def routers(self) -> list[APIRouter]:
        from ionflux.core.bus.api import router as events_router
        from ionflux.core.platform_api import router as platform_router
        from ionflux.core.vault.api import router as credentials_router
        from ionflux.core.webhooks.api import receiver
        from ionflux.core.webhooks.api import router as webhooks_router

        return [platform_router, credentials_router, events_router, receiver, webhooks_router]

    def hot_routes(self) -> list[Route]:
        from ionflux.core.webhooks.api import RECEIVER_ROUTES, receiver

        return served_directly([receiver], *RECEIVER_ROUTES)

    def body_limits(self) -> dict[str, int]:
        # Webhook bodies have their own setting; the pipeline enforces it too, with its own metric.
        return {"/webhooks/": self.platform.settings.webhook_max_body_bytes}
