"""Email Wizard on its own: RAG-drafted follow-up for paid high-value orders and the 24-hour
email-to-WhatsApp fallback, on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ionflux.agents.ports import MemoryItem
from ionflux.agents.service_plugin import AgentService
from tests.agents_fakes import FakeServices, order_record, shopify_event_data
from tests.agents_support import agents_client_fixture, configure, publish, settled  # noqa: F401 - fixture
from tests.conftest import WorkspaceHandle

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Client = tuple[httpx.AsyncClient, AgentService]
PAID = "platform.shopify.events.orders.paid"
OPENED = "platform.email.events.messages.opened"
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(agents_client: Client) -> tuple[httpx.AsyncClient, AgentService, FakeServices, MovableClock]:
    client, service = agents_client
    fakes = FakeServices()
    service.ports = fakes.ports
    clock = MovableClock(T0)
    service.use_clock(clock)
    return client, service, fakes, clock


World = tuple[httpx.AsyncClient, AgentService, FakeServices, MovableClock]


async def wizard(client: httpx.AsyncClient, ws: WorkspaceHandle) -> str:
    return await configure(client, ws, "email_wizard", {"sender": "Ada's Shop <hello@shop.example>",
                                                        "min_order_value": "120.00"})


async def tick(client: httpx.AsyncClient, ws: WorkspaceHandle, cfg: str) -> dict[str, Any]:
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=ws.headers, json={})
    assert r.json()["status"] == "succeeded", r.text
    return dict(r.json()["output"])


async def test_paid_high_value_order_gets_a_rag_drafted_email(world: World, workspace: WorkspaceHandle) -> None:
    client, _, fakes, _ = world
    await fakes.memory.upsert([
        MemoryItem(id="voice", text="brand voice", metadata={"kind": "brand_voice", "text": "playful, uses emoji"}),
        MemoryItem(id="b1", text="Paid 200 USD for 1 x Linen shirt", metadata={
            "kind": "buyer", "text": "Paid 200 USD for 1 x Linen shirt", "order_id": "old"}),
    ])
    cfg = await wizard(client, workspace)
    await publish(client, workspace, PAID, shopify_event_data(order_record("p1", "150.00"), "orders/paid"))
    await publish(client, workspace, PAID, shopify_event_data(order_record("p2", "119.99"), "orders/paid"))
    await publish(client, workspace, PAID, shopify_event_data(order_record("p3", "500", email=None), "orders/paid"))
    runs = await settled(client, workspace, cfg, 3)
    outputs = {r["output"].get("order_id"): r["output"] for r in runs}
    assert outputs["p1"]["action"] == "emailed" and outputs["p1"]["similar_buyers"] == 1
    assert outputs["p2"]["action"] == "skipped" and "below" in outputs["p2"]["reason"]
    assert outputs["p3"]["action"] == "skipped" and "PII" in outputs["p3"]["reason"]
    [mail] = fakes.email.sent
    assert mail["to"] == "ada@example.com" and mail["subject"] == "Thanks from us" and "email_wizard" in mail["tags"]
    prompt, system = fakes.llm.prompts[0]
    assert "playful, uses emoji" in prompt and "Paid 200 USD for 1 x Linen shirt" in prompt and "#p1" in prompt
    assert system and "Subject:" in system
    assert outputs["p1"]["tokens"] > 0 and outputs["p1"]["memory"] == "ns"
    assert "buyer-c-p1-p1" in fakes.memory.items  # remembered for the next similar buyer
    # the same paid order again: no second mail
    again = await publish(client, workspace, PAID, shopify_event_data(order_record("p1", "150.00"), "orders/paid"))
    runs = await settled(client, workspace, cfg, 4)
    [rerun] = [r for r in runs if r["trigger_event_id"] == again]
    assert len(fakes.email.sent) == 1 and rerun["output"]["reason"] == "already followed up"


async def test_not_opened_in_24h_falls_back_to_whatsapp_once(world: World, workspace: WorkspaceHandle) -> None:
    client, _, fakes, clock = world
    fakes.whatsapp.consented.add("15551230000")
    cfg = await wizard(client, workspace)
    await publish(client, workspace, PAID, shopify_event_data(order_record("p1", "150.00"), "orders/paid"))
    await settled(client, workspace, cfg, 1)
    clock.now = T0 + timedelta(hours=23, minutes=59)
    assert (await tick(client, workspace, cfg))["whatsapp_sent"] == 0
    clock.now = T0 + timedelta(hours=24)
    out = await tick(client, workspace, cfg)
    assert out["whatsapp_sent"] == 1
    assert fakes.whatsapp.sent == [{"to": "15551230000", "type": "template", "template": "order_followup",
                                    "language": "en_US", "parameters": ["Ada", "#p1"]}]
    clock.now = T0 + timedelta(hours=48)
    assert (await tick(client, workspace, cfg))["whatsapp_sent"] == 0 and len(fakes.whatsapp.sent) == 1


async def test_opened_email_cancels_the_fallback(world: World, workspace: WorkspaceHandle) -> None:
    client, _, fakes, clock = world
    fakes.whatsapp.consented.add("15551230000")
    cfg = await wizard(client, workspace)
    await publish(client, workspace, PAID, shopify_event_data(order_record("p1", "150.00"), "orders/paid"))
    await settled(client, workspace, cfg, 1)
    clock.now = T0 + timedelta(hours=2)
    await publish(client, workspace, OPENED, {"message_id": "em-1", "status": "opened"})
    await publish(client, workspace, OPENED, {"message_id": "someone-else", "status": "opened"})
    runs = await settled(client, workspace, cfg, 3)
    assert sorted(r["output"]["action"] for r in runs) == ["emailed", "ignored", "opened"]
    clock.now = T0 + timedelta(hours=30)
    assert (await tick(client, workspace, cfg))["whatsapp_sent"] == 0 and fakes.whatsapp.sent == []


async def test_no_whatsapp_consent_means_no_fallback(world: World, workspace: WorkspaceHandle) -> None:
    client, _, fakes, clock = world
    cfg = await wizard(client, workspace)
    await publish(client, workspace, PAID, shopify_event_data(order_record("p1", "150.00"), "orders/paid"))
    await publish(client, workspace, PAID, shopify_event_data(order_record("p2", "150.00", phone=None), "orders/paid"))
    await settled(client, workspace, cfg, 2)
    clock.now = T0 + timedelta(days=2)
    out = await tick(client, workspace, cfg)
    assert (out["whatsapp_sent"], out["no_consent"], out["no_phone"]) == (0, 1, 1) and fakes.whatsapp.sent == []
    assert (await tick(client, workspace, cfg))["no_consent"] == 0  # settled, not retried
