"""The EmailService as a platform `Service`: providers, dispatcher, worker, bus consumers and routers.

Events it publishes: `platform.email.events.messages.<status>`. Events it consumes: SendGrid Event Webhook
batches (`platform.sendgrid.events.email_events.received`) and SES notifications (`platform.ses.events.email.*`)
from the shared webhook pipeline.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ionflux.core.errors import Conflict, NotFound
from ionflux.core.models import PLATFORM_WORKSPACE, Connection, utcnow
from ionflux.core.platform import Platform
from ionflux.core.service import Service
from ionflux.core.webhooks.base import WebhookProvider
from ionflux.core.webhooks.sns import Fetcher, https_fetcher
from ionflux.email import catalog
from ionflux.email.dispatch import Dispatcher
from ionflux.email.events import ProviderEvents
from ionflux.email.models import EmailWorkspaceSettings
from ionflux.email.providers.base import EmailProvider
from ionflux.email.providers.sendgrid import SendGridProvider
from ionflux.email.providers.ses import SesProvider
from ionflux.email.providers.smtp import SmtpProvider
from ionflux.email.schemas import BatchRequest, BatchResult, SendRequest, SendResult, SettingsIn
from ionflux.email.service import EmailService
from ionflux.email.settings import EmailSettings, SendGridSettings, SesSettings, SmtpSettings
from ionflux.email.unsubscribe import UnsubscribeLinks
from ionflux.email.webhooks import SendGridEvents, SesNotifications, workspace_account
from ionflux.email.worker import EmailWorker

LINKS_CREDENTIAL = "email_links"  # vault provider holding the generated unsubscribe-link key


def default_providers(platform: Platform) -> dict[str, EmailProvider]:
    return {"smtp": SmtpProvider(SmtpSettings()), "sendgrid": SendGridProvider(SendGridSettings()),
            "ses": SesProvider(SesSettings())}


class EmailPlugin(Service):
    name = "email"

    def __init__(self, platform: Platform, *, settings: EmailSettings | None = None,
                 providers: dict[str, EmailProvider] | None = None, sns_fetcher: Fetcher = https_fetcher,
                 clock: Callable[[], datetime] = utcnow) -> None:
        super().__init__(platform)
        self.sns_fetcher = sns_fetcher  # fetches SNS signing certificates and SubscribeURLs (tests inject one)
        self.settings = settings or EmailSettings()
        self.providers = providers if providers is not None else default_providers(platform)
        self.dispatcher = Dispatcher(platform, self.settings, self.providers, on_send=self._routable, clock=clock)
        self.worker = EmailWorker(platform.db, self.dispatcher, poll_seconds=self.settings.worker_poll_seconds,
                                  clock=clock)
        self._links: UnsubscribeLinks | None = None
        self.ses_topic_arn = SesSettings().topic_arn
        self._connected: set[tuple[str, str]] = set()
        self.service = EmailService(platform, self.settings, self.dispatcher, self.links, wake=self.worker.wake,
                                    clock=clock)
        self.events = ProviderEvents(platform.db, self.links)
        platform.bus.subscribe("email.sendgrid-events", ["platform.sendgrid.events.email_events.received"],
                               self.events.on_sendgrid)
        platform.bus.subscribe("email.ses-events", ["platform.ses.events.email.*"], self.events.on_ses)

    # -- the public interface (ionflux.email.interface.EmailSender) ------------------------------------
    async def send(self, workspace_id: str, request: SendRequest) -> SendResult:
        return await self.service.send(workspace_id, request)

    async def batch(self, workspace_id: str, request: BatchRequest) -> BatchResult:
        return await self.service.batch(workspace_id, request)

    # -- Service -------------------------------------------------------------------------------------
    def routers(self) -> list[APIRouter]:
        from ionflux.email.api import public, router

        return [router, public]

    async def start(self) -> None:
        self._links = UnsubscribeLinks(await self._links_key(), self.settings.public_url)
        if self.ses_topic_arn:
            await self.connect("ses", self.ses_topic_arn, PLATFORM_WORKSPACE)
        self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()
        for provider in self.providers.values():
            await provider.aclose()

    def webhook_providers(self) -> list[WebhookProvider]:
        """Plugged into the shared webhook pipeline (replacing the plain SendGrid mapping, adding `ses`)."""
        return [SendGridEvents(), SesNotifications(self.sns_fetcher, platform_topic=self.ses_topic_arn)]

    def links(self) -> UnsubscribeLinks:
        if self._links is None:
            raise RuntimeError("the email service has not started")
        return self._links

    async def _links_key(self) -> bytes:
        if self.settings.unsubscribe_secret:
            return self.settings.unsubscribe_secret.encode()
        vault = self.platform.vault
        try:
            return base64.b64decode((await vault.get(PLATFORM_WORKSPACE, LINKS_CREDENTIAL))["key"])
        except NotFound:
            key = base64.b64encode(secrets.token_bytes(32)).decode()
            await vault.put(PLATFORM_WORKSPACE, LINKS_CREDENTIAL, {"key": key}, origin="generated")
            # Two processes starting at once: whichever write landed last is the key everyone reads.
            return base64.b64decode((await vault.get(PLATFORM_WORKSPACE, LINKS_CREDENTIAL))["key"])

    async def _routable(self, workspace_id: str, provider: str) -> None:
        """Before a workspace first sends through SendGrid or SES, its `workspace:<id>` connection exists, so
        the shared accounts' events can be routed to it (once per process)."""
        if (workspace_id, provider) not in self._connected:
            await self.connect(provider, workspace_account(workspace_id), workspace_id)
            self._connected.add((workspace_id, provider))

    async def connect(self, provider: str, external_id: str, workspace_id: str, *,
                      connection_id: str | None = None) -> str:
        """The webhook connection for an account (idempotent); its id is in the webhook URL."""
        async with self.platform.db.tenant(workspace_id) as session:
            row = await session.scalar(select(Connection).where(Connection.provider == provider,
                                                                Connection.external_id == external_id))
            if row is not None:
                return row.id
        try:
            async with self.platform.db.tenant(workspace_id) as session:
                row = Connection(provider=provider, external_id=external_id, meta={"service": "email"})
                if connection_id:
                    row.id = connection_id
                session.add(row)
                await session.flush()
                return row.id
        except IntegrityError:
            async with self.platform.db.tenant(workspace_id) as session:
                found = await session.scalar(select(Connection.id).where(Connection.provider == provider,
                                                                         Connection.external_id == external_id))
            if found is None:
                raise Conflict(f"that {provider} account is connected to another workspace",
                               field="external_id") from None
            return found

    async def put_settings(self, workspace_id: str, body: SettingsIn) -> dict[str, Any]:
        async with self.platform.db.tenant(workspace_id) as session:
            await catalog.put_settings(session, workspace_id, body)
        if "sendgrid" in (body.provider, body.fallback_provider):
            await self._routable(workspace_id, "sendgrid")
        if body.ses_topic_arn:
            await self.connect("ses", body.ses_topic_arn, workspace_id)
        return await self.settings_view(workspace_id)

    async def settings_view(self, workspace_id: str) -> dict[str, Any]:
        async with self.platform.db.tenant(workspace_id) as session:
            own = await session.get(EmailWorkspaceSettings, workspace_id)
            hooks = dict((await session.execute(select(Connection.provider, Connection.id).where(
                Connection.provider.in_(["sendgrid", "ses"]), Connection.meta["service"].as_string() == "email")
            )).all())
        chain = await self.dispatcher.chain(workspace_id)
        sendgrid = hooks.get("sendgrid")
        return {
            "provider": chain[0], "fallback_provider": chain[1] if len(chain) > 1 else None,
            "source": "workspace" if own else "platform",
            "webhooks": {"sendgrid_own_account": f"/webhooks/sendgrid/{sendgrid}" if sendgrid else None,
                         "sendgrid_platform_account": "/webhooks/sendgrid",
                         "ses": "/webhooks/ses", "ses_topic_connection": hooks.get("ses")},
        }
