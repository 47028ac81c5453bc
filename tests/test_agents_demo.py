"""`ionflux demo --once`: the whole flow on loopback, its summary checked against what the simulators saw."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from ionflux.demo import BURST, demo
from tests.server import free_port

THRESHOLD, SEGMENT = Decimal("100"), Decimal("120")


async def test_demo_once_summary_matches_the_simulators(tmp_path: Path) -> None:
    screen = io.StringIO()
    summary = await demo(port=free_port(), once=True, data_dir=tmp_path / "data", store_orders=60,
                         summary_json=tmp_path / "summary.json",
                         console=Console(file=screen, width=160, log_path=False, color_system=None))
    shown = screen.getvalue()
    sim = summary.simulators
    fired = summary.orders_fired
    assert [o["total"] for o in fired] == [total for total, _, _ in BURST]

    # every distinct webhook delivery became exactly one event; retries and duplicates were dropped
    event_ids = {e for o in fired for e in o["event_ids"]}
    webhook_events = summary.events["platform.shopify.events.orders.created"] + \
        summary.events["platform.shopify.events.orders.paid"]
    assert webhook_events == len(event_ids) and sim["shopify_webhook_posts"] > len(event_ids)

    # Sales Sentinel ran once per orders.created event, and alerted once per order above 100.00
    created_events = summary.events["platform.shopify.events.orders.created"]
    assert summary.runs["Sales Sentinel"] == {"succeeded": created_events}
    assert summary.alerts == [o["name"] for o in fired if Decimal(o["total"]) > THRESHOLD]

    # Email Wizard mailed each paid order of the segment; the fallback went to those who consented
    segment = [o for o in fired if o["paid"] and Decimal(o["total"]) >= SEGMENT]
    assert summary.emails_sent == sim["smtp_messages"] == len(segment) > 0
    assert summary.llm_calls == len(segment) and summary.llm_tokens > 0
    local_text = "llama.cpp" in summary.models["text_generation"]  # the extra local-llm is installed
    assert sim["openai_chat_requests"] == (0 if local_text else len(segment))
    fallbacks = [o for o in segment if o["consent"]]
    assert summary.whatsapp_sent == sim["whatsapp_messages"] == len(summary.alerts) + len(fallbacks)
    assert set(summary.runs["Email Wizard"]) == {"succeeded"}

    # Revenue Tracker's report is the store's own figures for the same days in the shop's time zone
    report = summary.report
    assert report["timezone"] == "America/New_York" and report["days"] == 7
    assert report["orders"] == sim["shop_orders_in_report_period"]
    assert Decimal(report["sales"]) == Decimal(sim["shop_sales_in_report_period"])

    for step in ("webhook verified", "agent run", "LLM call", "email sent", "WhatsApp delivered", "summary"):
        assert step in shown, step
    assert (tmp_path / "summary.json").read_text().startswith("{")
