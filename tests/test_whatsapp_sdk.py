"""The simulator against a real WhatsApp SDK: pywa (the maintained Python Cloud API client; Meta's own SDK is
Node-only) sends through it with its HTTP client pointed at the simulator, understands its error bodies
(131047, 130429, 132001 become pywa's own error classes), and accepts its signed webhooks as a receiver."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ionflux.sandbox.server import SimulatorServer
from ionflux.sandbox.webhook_sender import WebhookSender
from ionflux.sandbox.whatsapp import SentMessage, WhatsAppSimulator

pywa_async = pytest.importorskip("pywa_async")
from pywa import errors  # noqa: E402
from pywa_async import WhatsApp, types  # noqa: E402
from pywa_async.types.templates import TemplateLanguage  # noqa: E402

SECRET, TOKEN = "sdk-app-secret-0123", "EAAG-sdk-token-0123"
PHONE, WABA, USER = "106540352242922", "1022901", "447700900123"


class ToSimulator(httpx.AsyncBaseTransport):
    """pywa always builds https://graph.facebook.com/v{version}/…: send it to the simulator instead."""

    def __init__(self, base_url: str) -> None:
        self.base = httpx.URL(base_url)
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme=self.base.scheme, host=self.base.host, port=self.base.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_pywa_sends_through_the_simulator_and_understands_its_errors() -> None:
    sim = WhatsAppSimulator(app_secret=SECRET, system_tokens={TOKEN}, auto_statuses=())
    sim.add_number(PHONE, waba_id=WABA, display_phone_number="15550001111", messages_per_second=3)
    sim.add_template(WABA, "order_update", body="Hi {{1}}, your order costs {{2}}")
    async with SimulatorServer(sim.app) as server, httpx.AsyncClient(transport=ToSimulator(server.base_url)) as s:
        wa = WhatsApp(phone_id=PHONE, token=TOKEN, session=s, api_version="23.0")
        with pytest.raises(errors.ReEngagementMessage):
            await wa.send_message(to=USER, text="no window yet")
        sim.windows[(PHONE, USER)] = sim.clock()
        sent = await wa.send_message(to=USER, text="Hello from the SDK", buttons=[
            types.Button(title="Yes", callback_data="yes"), types.Button(title="No", callback_data="no")])
        assert sent.id.startswith("wamid.") and sim.sent[sent.id].body["interactive"]["type"] == "button"
        template = await wa.send_template(to=USER, name="order_update", language=TemplateLanguage.ENGLISH_US,
                                          params=[{"type": "body", "parameters": [
                                              {"type": "text", "text": "Ana"},
                                              {"type": "currency", "currency": {
                                                  "fallback_value": "$10", "code": "USD", "amount_1000": 10000}}]}])
        assert template.id in sim.sent
        with pytest.raises(errors.WhatsAppError) as caught:
            await wa.send_template(to=USER, name="no_such", language=TemplateLanguage.ENGLISH_US)
        assert caught.value.code == 132001
        with pytest.raises(errors.RateLimitHit):  # 3 messages/s on this number: the 4th in the same second
            for _ in range(3):
                await wa.send_message(to=USER, text="again")


async def test_pywa_accepts_the_simulators_signed_webhooks() -> None:
    seen: list[Any] = []
    wa = WhatsApp(phone_id=PHONE, token=TOKEN, server=None, app_secret=SECRET, verify_token="v",
                  validate_updates=True, api_version="23.0")

    @wa.on_message()
    async def on_message(_: WhatsApp, message: types.Message) -> None:
        seen.append(("message", message.from_user.wa_id, message.text))

    @wa.on_message_status()
    async def on_status(_: WhatsApp, status: types.MessageStatus) -> None:
        seen.append(("status", status.id, status.status.value))

    async def receive(request: Request) -> PlainTextResponse:
        body = await request.body()
        refused = await wa.webhook_update_validator(body, request.headers.get("X-Hub-Signature-256"))
        if refused:
            return PlainTextResponse(refused[0], status_code=refused[1])
        text, status = await wa.webhook_update_handler(body)
        return PlainTextResponse(text, status_code=status)

    receiver = Starlette(routes=[Route("/webhook", receive, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver), base_url="http://pywa.test") as client:
        sim = WhatsAppSimulator(app_secret=SECRET, webhook_url="http://pywa.test/webhook", auto_statuses=(),
                                sender=WebhookSender(client))
        sim.add_number(PHONE, waba_id=WABA, display_phone_number="15550001111")
        message = await sim.phone.send_text(PHONE, USER, "hi from the phone")
        assert sim.stats.webhooks[-1].status == 200
        sim.sent["wamid.OUT"] = SentMessage("wamid.OUT", PHONE, USER, {}, TOKEN, 0)  # as if the business sent it
        await sim.phone.report("wamid.OUT", ["delivered", "read"])
        forged = WhatsAppSimulator(app_secret="wrong-secret", webhook_url="http://pywa.test/webhook",
                                   sender=WebhookSender(client))
        forged.add_number(PHONE, waba_id=WABA, display_phone_number="15550001111")
        await forged.phone.send_text(PHONE, USER, "forged")
        assert forged.stats.webhooks[-1].status == 403  # pywa refuses a wrong signature
    assert ("message", USER, "hi from the phone") in seen and message["id"]
    assert [s for s in seen if s[0] == "status"] == [("status", "wamid.OUT", "delivered"),
                                                      ("status", "wamid.OUT", "read")]
