"""Set-up shared by the WhatsApp tests: the Graph simulator on loopback, the full app (its webhooks delivered
by the simulator in-process through ASGI), a workspace with a connected number, a movable clock, and a
recorder of the events the service publishes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from ionflux.app import create_app
from ionflux.core.bus import Event
from ionflux.core.models import utcnow
from ionflux.core.platform import Platform
from ionflux.core.settings import Settings
from ionflux.messaging.service_plugin import MessagingService
from ionflux.sandbox.server import SimulatorServer
from ionflux.sandbox.webhook_sender import WebhookSender
from ionflux.sandbox.whatsapp import WhatsAppSimulator
from ionflux.services import services_running
from tests.polling import until

APP_SECRET = "meta-app-secret-for-tests-0123"
VERIFY_TOKEN = "verify-token-for-tests-0123"
PLATFORM_TOKEN = "EAAG-platform-system-user-token-0001"
NUMBER_TOKEN = "EAAG-workspace-number-token-0002"
PHONE_ID = "106540352242922"
WABA_ID = "102290129340398"
DISPLAY = "15550001111"
USER = "447700900123"
RECEIVED = "platform.whatsapp.events.messages.received"
STATUS = "platform.whatsapp.events.messages.status"


class MovableClock:
    """The service's clock: real time plus an offset a test moves forward (no sleeping)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, **kw: float) -> None:
        self.offset += timedelta(**kw)


@dataclass
class WaEnv:
    client: httpx.AsyncClient
    platform: Platform
    sim: WhatsAppSimulator
    server: SimulatorServer
    headers: dict[str, str]
    workspace_id: str
    clock: MovableClock
    events: list[Event] = field(default_factory=list)

    @property
    def service(self) -> MessagingService:
        service = self.platform.services["messaging"]
        assert isinstance(service, MessagingService)
        return service

    def of(self, event_type: str) -> list[Event]:
        return [e for e in self.events if e.type == event_type]

    async def wait_events(self, event_type: str, count: int, within: float = 15.0) -> list[Event]:
        async def enough() -> bool:
            return len(self.of(event_type)) >= count
        await until(enough, within)
        return self.of(event_type)

    async def send(self, **body: Any) -> httpx.Response:
        return await self.client.post("/v1/whatsapp/messages", json=body, headers=self.headers)

    async def opt_in(self, wa_id: str = USER) -> None:
        response = await self.client.put(f"/v1/whatsapp/contacts/{wa_id}/consent", headers=self.headers,
                                         json={"source": "web_form", "text_shown": "Yes, Acme may message me"})
        assert response.status_code == 200, response.text

    async def inbound(self, text: str, wa_id: str = USER) -> dict[str, Any]:
        """The user writes (opens the window); returns once the service has published it."""
        before = len(self.of(RECEIVED))
        message = await self.sim.phone.send_text(PHONE_ID, wa_id, text)
        await self.wait_events(RECEIVED, before + 1)
        return message


@pytest.fixture
async def wa_env(settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
                 request: pytest.FixtureRequest) -> AsyncIterator[WaEnv]:
    options: dict[str, Any] = getattr(request, "param", {}) or {}
    sim = WhatsAppSimulator(app_secret=APP_SECRET, webhook_url="http://ionflux.test/webhooks/whatsapp",
                            system_tokens={PLATFORM_TOKEN}, auto_statuses=options.get("auto_statuses", ()),
                            pair_rate=options.get("pair_rate"))
    sim.add_number(PHONE_ID, waba_id=WABA_ID, display_phone_number=DISPLAY, tokens={NUMBER_TOKEN},
                   messages_per_second=options.get("sim_mps", 80.0))
    sim.add_template(WABA_ID, "order_update", body="Hi {{1}}, your order costs {{2}}")
    async with SimulatorServer(sim.app, name="whatsapp") as server:
        for name, value in {"APP_SECRET": APP_SECRET, "VERIFY_TOKEN": VERIFY_TOKEN, "ACCESS_TOKEN": PLATFORM_TOKEN,
                            "BASE_URL": server.base_url, "PAIR_MESSAGES": "1000",
                            **options.get("env", {})}.items():
            monkeypatch.setenv(f"IONFLUX_WHATSAPP_{name}", str(value))
        platform = Platform.from_settings(settings_factory())
        await platform.start()
        app = create_app(platform, manage_lifecycle=False, only=["messaging"])  # just what these tests need
        clock = MovableClock()
        try:
            async with services_running(list(platform.services.values())), httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://ionflux.test") as client:
                sim.sender = WebhookSender(client, max_attempts=5, backoff_base=0.05, backoff_cap=0.5)
                created = await platform.workspaces.create("acme")
                env = WaEnv(client, platform, sim, server, {"Authorization": f"Bearer {created.token}"},
                            created.id, clock)
                env.service.whatsapp.clock = clock

                async def record(event: Event, _session: Any) -> None:
                    env.events.append(event)

                platform.bus.subscribe("test.whatsapp-recorder", ["platform.whatsapp.events.messages.*",
                                                                  "platform.whatsapp.events.templates.*"], record)
                if options.get("connect", True):
                    number: dict[str, Any] = {"phone_number_id": PHONE_ID, "waba_id": WABA_ID,
                                              "display_phone_number": DISPLAY}
                    if options.get("own_token", False):
                        number["access_token"] = NUMBER_TOKEN
                    response = await client.post("/v1/whatsapp/numbers", json=number, headers=env.headers)
                    assert response.status_code == 201, response.text
                yield env
                await sim.settle()
        finally:
            await platform.stop()
