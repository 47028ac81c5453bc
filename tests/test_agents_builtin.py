"""The three reference agents, each on its own, run by the real bridge (triggers, runs, state) with
small in-process implementations of the services they call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from ionflux.agents.builtin.revenue_tracker import build_report, period
from ionflux.agents.orders import order_from_record
from ionflux.agents.ports import ShopInfo
from ionflux.agents.service_plugin import AgentService
from tests.agents_fakes import FakeServices, order_record, shopify_event_data
from tests.agents_support import agents_client_fixture, configure, events, publish, settled  # noqa: F401 - fixture
from tests.conftest import WorkspaceHandle

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Client = tuple[httpx.AsyncClient, AgentService]


@pytest.fixture
def fakes(agents_client: Client) -> FakeServices:
    services = FakeServices()
    agents_client[1].ports = services.ports
    return services


# -- Shopify Sales Sentinel ------------------------------------------------------------------------

CREATED = "platform.shopify.events.orders.created"


@sqlite_only
async def test_sentinel_threshold_edges_in_decimal(agents_client: Client, fakes: FakeServices,
                                                   workspace: WorkspaceHandle) -> None:
    client, _ = agents_client
    cfg = await configure(client, workspace, "shopify_sales_sentinel",
                          "threshold: 100.10\nrecipient: ops@example.com\n")
    totals = ["100.10", "100.11", "0.30", "150.00", "100.1000"]
    for i, total in enumerate(totals):
        await publish(client, workspace, CREATED, shopify_event_data(order_record(f"o{i}", total)))
    runs = await settled(client, workspace, cfg, len(totals))
    alerted = {r["output"]["order_id"]: r["output"]["alerted"] for r in runs}
    assert alerted == {"o0": False, "o1": True, "o2": False, "o3": True, "o4": False}
    assert [m["to"] for m in fakes.email.sent] == ["ops@example.com"] * 2
    assert "#o1: 100.11 USD is above your 100.10 USD threshold" in fakes.email.sent[0]["subject"]
    alerts = await events(client, workspace, "platform.agents.events.alerts.created")
    assert [(a["data"]["order_id"], a["data"]["total_price"]) for a in alerts] == [("o1", "100.11"), ("o3", "150.00")]
    assert set(fakes.memory.items) == {"order-o1", "order-o3"}
    assert fakes.memory.items["order-o3"].metadata["total_price"] == "150.00"


@sqlite_only
async def test_sentinel_default_threshold_and_currency(agents_client: Client, fakes: FakeServices,
                                                       workspace: WorkspaceHandle) -> None:
    client, _ = agents_client
    cfg = await configure(client, workspace, "shopify_sales_sentinel", {"recipient": "ops@example.com",
                                                                        "currency": "EUR"})
    await publish(client, workspace, CREATED, shopify_event_data(order_record("usd", "500.00", currency="USD")))
    await publish(client, workspace, CREATED, shopify_event_data(order_record("eur", "100.01", currency="EUR")))
    await publish(client, workspace, CREATED, shopify_event_data(order_record("eur2", "100", currency="EUR")))
    runs = await settled(client, workspace, cfg, 3)
    outputs = {r["output"]["order_id"]: r["output"] for r in runs}
    assert outputs["usd"]["alerted"] is False and "not comparable" in outputs["usd"]["reason"]
    assert outputs["eur"]["alerted"] is True and outputs["eur2"]["alerted"] is False


@sqlite_only
async def test_sentinel_alerts_once_per_order(agents_client: Client, fakes: FakeServices,
                                              workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    cfg = await configure(client, workspace, "shopify_sales_sentinel",
                          {"recipient": "15550001111", "channel": "whatsapp"})
    fakes.whatsapp.consented.add("15550001111")
    record = order_record("777", "150.00")
    # the same order published three times (a webhook retry with a new event id, a reconciliation pass)
    for _ in range(3):
        await publish(client, workspace, CREATED, shopify_event_data(record))
    runs = await settled(client, workspace, cfg, 3)
    assert [r["output"]["alerted"] for r in runs].count(True) == 1
    assert len(fakes.whatsapp.sent) == 1
    assert fakes.whatsapp.sent[0]["parameters"] == ["#777", "150.00 USD", "100.00"]
    assert len(await events(client, workspace, "platform.agents.events.alerts.created")) == 1
    await service.executor.run_due()
    assert len(fakes.whatsapp.sent) == 1


@sqlite_only
async def test_sentinel_breaker_pauses_when_the_channel_keeps_failing(
    agents_client: Client, fakes: FakeServices, workspace: WorkspaceHandle
) -> None:
    client, _ = agents_client
    fakes.email.failing = True
    cfg = await configure(client, workspace, "shopify_sales_sentinel", {"recipient": "ops@example.com"})
    await publish(client, workspace, CREATED, shopify_event_data(order_record("9", "999.99")))
    runs = await settled(client, workspace, cfg, 1)
    assert runs[0]["status"] == "failed" and runs[0]["attempts"] == 3
    assert "PROVIDER_UNAVAILABLE" in runs[0]["error"]
    paused = await events(client, workspace, "platform.agents.events.configurations.paused")
    assert paused[0]["data"]["configuration_id"] == cfg and "PROVIDER_UNAVAILABLE" in paused[0]["data"]["reason"]
    # nothing half-done was kept: no alert event, no "alerted" state
    assert await events(client, workspace, "platform.agents.events.alerts.created") == []


# -- Revenue Tracker Lite --------------------------------------------------------------------------

def _order(oid: str, total: str, at: str, **kw: Any) -> Any:
    return order_from_record(order_record(oid, total, created_at=at, **kw))


def test_revenue_period_is_in_the_shop_time_zone() -> None:
    now = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # 13:00 on 10 March in Los Angeles (PDT, UTC-7)
    start, end = period(now, 1, "America/Los_Angeles")
    assert start.isoformat() == "2026-03-10T00:00:00-07:00" and end == now
    start, _ = period(now, 7, "Pacific/Auckland")  # already 11 March there
    assert start.isoformat() == "2026-03-05T00:00:00+13:00"


def test_revenue_report_sums_in_decimal_and_counts_days_locally() -> None:
    shop = ShopInfo("Demo", "USD", "America/Los_Angeles")
    now = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)
    start, end = period(now, 2, shop.timezone)  # 9 and 10 March, local
    orders = [
        _order("a", "0.10", "2026-03-10T06:30:00Z", items=[("p1", "Shirt", 1, "0.10")]),  # 9 March 23:30 PDT
        _order("b", "0.20", "2026-03-10T08:30:00Z", items=[("p2", "Hat", 2, "0.10")]),  # 10 March 01:30 PDT
        _order("c", "33.34", "2026-03-10T19:00:00Z", items=[("p1", "Shirt", 3, "11.11")]),
        _order("old", "999", "2026-03-09T06:59:00Z"),  # 8 March 23:59 PDT: outside
        _order("x", "50", "2026-03-10T10:00:00Z", cancelled_at="2026-03-10T11:00:00Z"),
        _order("eur", "70", "2026-03-10T10:00:00Z", currency="EUR"),
    ]
    report = build_report(orders, shop, start, end, 2, 5)
    assert report["sales"] == "33.64" and report["orders"] == 3
    assert report["average_order_value"] == "11.21"  # 33.64 / 3 = 11.2133... rounded half-up
    assert report["excluded"] == {"cancelled": 1, "other_currency": 1}
    assert report["daily"] == [{"date": "2026-03-09", "orders": 1, "sales": "0.10"},
                               {"date": "2026-03-10", "orders": 2, "sales": "33.54"}]
    assert [(p["title"], p["quantity"], p["revenue"]) for p in report["top_products"]] == [
        ("Shirt", 4, "33.43"), ("Hat", 2, "0.20")]
    assert Decimal(report["sales"]) == sum(Decimal(d["sales"]) for d in report["daily"])


@sqlite_only
async def test_revenue_tracker_on_demand_report(agents_client: Client, fakes: FakeServices,
                                                workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    service.use_clock(lambda: datetime(2026, 3, 10, 20, 0, tzinfo=UTC))
    fakes.shopify.stock = [_order("a", "10.005", "2026-03-10T18:00:00Z"), _order("b", "20", "2026-03-04T18:00:00Z"),
                           _order("c", "5", "2026-03-01T18:00:00Z")]
    cfg = await configure(client, workspace, "revenue_tracker_lite", {"days": 7, "top_products": 3})
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers,
                          json={"input": {"days": 1}})
    run = r.json()
    assert run["status"] == "succeeded", run
    assert run["output"]["report"]["orders"] == 1 and run["output"]["report"]["sales"] == "10.01"
    r = await client.post(f"/v1/agents/configurations/{cfg}/run?wait=true", headers=workspace.headers, json={})
    report = r.json()["output"]["report"]
    assert report["orders"] == 2 and report["sales"] == "30.01" and report["days"] == 7
    assert "| 30.01 USD | 2 | 15.00 USD |" in r.json()["output"]["markdown"]  # 30.005 -> 30.01; 15.0025 -> 15.00
    assert fakes.shopify.asked_since[-1] == datetime(2026, 3, 4, 8, 0, tzinfo=UTC)  # local midnight, PST
    published = await events(client, workspace, "platform.agents.events.reports.created")
    assert len(published) == 2 and published[-1]["data"]["report"]["sales"] == "30.01"


@sqlite_only
async def test_revenue_tracker_runs_on_its_schedule(agents_client: Client, fakes: FakeServices,
                                                    workspace: WorkspaceHandle) -> None:
    client, service = agents_client
    cfg = await configure(client, workspace, "revenue_tracker_lite", {})
    now = datetime.now(UTC) + timedelta(days=1, hours=1)  # past tomorrow's 07:00 UTC slot
    service.use_clock(lambda: now)
    assert await service.scheduler.tick(now) == 1
    assert await service.scheduler.tick(now + timedelta(minutes=5)) == 0
    runs = await settled(client, workspace, cfg, 1)
    assert runs[0]["trigger"]["type"] == "schedule" and runs[0]["trigger"]["scheduled_for"].endswith("07:00:00.000000Z")
