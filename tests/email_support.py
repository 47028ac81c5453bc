"""Shared set-up for the email tests: an app running only the email service, an SMTP sink, helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import select

from ionflux.app import create_app
from ionflux.core.models import OutboxEvent
from ionflux.core.platform import Platform
from ionflux.email.providers.base import EmailProvider
from ionflux.email.providers.smtp import SmtpProvider
from ionflux.email.service_plugin import EmailPlugin
from ionflux.email.settings import EmailSettings, SmtpSettings
from ionflux.sandbox.smtp_sink import SmtpSink
from ionflux.services import services_running

SENDER = "news@shop.example.com"


@dataclass
class EmailEnv:
    platform: Platform
    client: httpx.AsyncClient
    plugin: EmailPlugin
    sink: SmtpSink
    headers: dict[str, str]
    workspace_id: str
    app: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def send(self, expect: int = 200, auth: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("from", SENDER)
        response = await self.client.post("/v1/email/send", json=body, headers=auth or self.headers)
        assert response.status_code == expect, response.text
        data: dict[str, Any] = response.json()
        return data

    async def message(self, message_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        response = await self.client.get(f"/v1/email/messages/{message_id}", headers=headers or self.headers)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def events(self, prefix: str = "platform.email.events.messages.") -> list[OutboxEvent]:
        async with self.platform.db.system() as session:
            rows = (await session.scalars(select(OutboxEvent).where(OutboxEvent.type.startswith(prefix))
                                          .order_by(OutboxEvent.seq))).all()
        return list(rows)


@asynccontextmanager
async def email_env(platform: Platform, workspace_id: str, token: str, *, settings: EmailSettings | None = None,
                    providers: Callable[[SmtpSink], dict[str, EmailProvider]] | None = None,
                    pipeline: Any = None, **plugin_options: Any) -> AsyncIterator[EmailEnv]:
    async with SmtpSink(with_api=False) as sink:
        chosen = providers(sink) if providers else {
            "smtp": SmtpProvider(SmtpSettings(host=sink.host, port=sink.port, pool_size=4))}
        plugin = EmailPlugin(platform, settings=settings or EmailSettings(worker_poll_seconds=0.05),
                             providers=chosen, **plugin_options)
        platform.services["email"] = plugin
        app = create_app(platform, only=["platform"], manage_lifecycle=False)
        for router in plugin.routers():
            app.include_router(router)
        if pipeline is not None:
            app.state.webhooks = pipeline
        async with services_running([plugin]), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://ionflux.test"
        ) as client:
            yield EmailEnv(platform, client, plugin, sink, {"Authorization": f"Bearer {token}"}, workspace_id,
                           app=app)
