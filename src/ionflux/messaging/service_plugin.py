"""MessagingService: plugs the WhatsApp channel into the platform (routers, the webhook consumer, the client)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ionflux.core.bus import Event
from ionflux.core.errors import InvalidRequest
from ionflux.core.platform import Platform
from ionflux.core.service import Service
from ionflux.messaging.consent import Keywords
from ionflux.messaging.inbound import InboundHandler
from ionflux.messaging.interface import Channel
from ionflux.messaging.service import WhatsAppService
from ionflux.messaging.settings import WhatsAppSettings
from ionflux.messaging.templates import TemplateCatalogue
from ionflux.messaging.validation import SendRequest
from ionflux.messaging.whatsapp import WhatsAppCloudClient

# The shared pipeline publishes each verified WhatsApp change as platform.whatsapp.events.<field>.changed.
WEBHOOK_TOPICS = ["platform.whatsapp.events.messages.changed",
                  "platform.whatsapp.events.message_template_status_update.changed",
                  "platform.whatsapp.events.webhook.changed"]


class MessagingService(Service):
    name = "messaging"
    channels: tuple[Channel, ...] = ("whatsapp",)

    def __init__(self, platform: Platform, settings: WhatsAppSettings | None = None) -> None:
        super().__init__(platform)
        self.settings = settings or WhatsAppSettings()
        self.cloud = WhatsAppCloudClient(self.settings, registry=platform.metrics.registry)
        self.whatsapp = WhatsAppService(platform, self.settings, self.cloud)
        self.templates = TemplateCatalogue(platform, self.whatsapp.numbers, self.cloud)
        self.inbound = InboundHandler(Keywords(self.settings.stop_keywords, self.settings.start_keywords))
        platform.bus.subscribe("messaging.whatsapp-webhooks", WEBHOOK_TOPICS, self._on_webhook)

    async def _on_webhook(self, event: Event, session: Any) -> None:
        await self.inbound.handle(event, session)

    def routers(self) -> list[APIRouter]:
        from ionflux.messaging.api import router

        return [router]

    async def stop(self) -> None:
        await self.cloud.aclose()

    async def send(self, workspace_id: str, channel: Channel, request: SendRequest) -> dict[str, Any]:
        self._channel(channel)
        return await self.whatsapp.send(workspace_id, request)

    async def message(self, workspace_id: str, channel: Channel, message_id: str) -> dict[str, Any]:
        self._channel(channel)
        return await self.whatsapp.get(workspace_id, message_id)

    def _channel(self, channel: str) -> None:
        if channel not in self.channels:
            raise InvalidRequest(f"unknown channel {channel!r}; known: {', '.join(self.channels)}", field="channel")
