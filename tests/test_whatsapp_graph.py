"""The Graph adapter against the simulator, without the app: paging, Meta's error bodies, the simulator's own
throughput and window rules (inbound counted too)."""

from __future__ import annotations

import pytest

from ionflux.core.errors import OutsideServiceWindow, RateLimited
from ionflux.messaging.settings import WhatsAppSettings
from ionflux.messaging.whatsapp import WhatsAppCloudClient
from ionflux.sandbox.server import SimulatorServer
from ionflux.sandbox.whatsapp import WhatsAppSimulator

TOKEN, PHONE, WABA, USER = "EAAG-graph-test-token", "106540352242922", "102290129340398", "447700900123"


def text(to: str = USER) -> dict[str, object]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"body": "hi", "preview_url": False}}


async def test_templates_are_read_across_pages() -> None:
    sim = WhatsAppSimulator(app_secret="s", system_tokens={TOKEN})
    sim.add_number(PHONE, waba_id=WABA, display_phone_number="15550001111")
    for i in range(5):
        sim.add_template(WABA, f"t{i}")
    async with SimulatorServer(sim.app) as server:
        cloud = WhatsAppCloudClient(WhatsAppSettings(base_url=server.base_url))
        try:
            names = [t["name"] for t in await cloud.list_templates(WABA, TOKEN, page_size=2)]
        finally:
            await cloud.aclose()
    assert names == ["t0", "t1", "t2", "t3", "t4"]
    assert len([r for r in server.requests if r.path.endswith("/message_templates")]) == 3


async def test_throughput_counts_inbound_too_and_the_window_is_metas() -> None:
    sim = WhatsAppSimulator(app_secret="s", system_tokens={TOKEN}, auto_statuses=())
    sim.add_number(PHONE, waba_id=WABA, display_phone_number="15550001111", messages_per_second=2)
    async with SimulatorServer(sim.app) as server:
        cloud = WhatsAppCloudClient(WhatsAppSettings(base_url=server.base_url, rate_limit_retries=0))
        try:
            with pytest.raises(OutsideServiceWindow):
                await cloud.send(PHONE, TOKEN, text())
            await sim.phone.send_text(PHONE, USER, "hello")  # no webhook URL: only the window and the count
            await sim.phone.send_text(PHONE, USER, "again")  # two inbound messages use this second's budget
            with pytest.raises(RateLimited) as caught:
                await cloud.send(PHONE, TOKEN, text())
            assert caught.value.details["meta_code"] == 130429
        finally:
            await cloud.aclose()
    assert sim.stats.throttled == 1 and sim.stats.sent == 0
