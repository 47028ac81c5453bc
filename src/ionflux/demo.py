"""`ionflux demo`: the whole flow on one machine, no keys, no servers to set up.

Simulators (Shopify, WhatsApp, OpenAI, an SMTP sink) and IONFLUX start on loopback; a workspace connects
the store through the real OAuth flow and backfills it; the three reference agents are configured; the
store fires a burst of signed webhooks (a $150 order among them, and duplicates); each step is shown as
IONFLUX publishes it; a summary closes, with what the simulators saw beside what IONFLUX counted.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ionflux.demo_world import DemoWorld, patched_environ

FOLLOWUP_SECONDS = 6.0  # Email Wizard's "not opened within 24 h", shortened so the demo shows the fallback
BURST = [  # (total, paid, WhatsApp consent): what the store sells during the demo
    ("150.00", True, True), ("42.50", False, False), ("100.00", True, False), ("231.90", True, False),
    ("88.00", True, True), ("100.01", False, False),
]


@dataclass
class DemoSummary:
    workspace_id: str = ""
    seconds: float = 0.0
    models: dict[str, str] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    alerts: list[str] = field(default_factory=list)  # order names
    emails_sent: int = 0
    whatsapp_sent: int = 0
    llm_calls: int = 0  # text generation
    llm_tokens: int = 0
    embedding_calls: int = 0
    report: dict[str, Any] = field(default_factory=dict)
    orders_fired: list[dict[str, Any]] = field(default_factory=list)
    simulators: dict[str, Any] = field(default_factory=dict)  # what the outside world saw

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)


def run_demo(*, port: int = 8080, once: bool = False, data_dir: Path | None = None,
             summary_json: Path | None = None, console: Console | None = None) -> DemoSummary:
    """The `ionflux demo` command (see the module docstring). With `once`, stop after the summary."""
    return asyncio.run(demo(port=port, once=once, data_dir=data_dir, summary_json=summary_json, console=console))


async def demo(*, port: int, once: bool, data_dir: Path | None = None, summary_json: Path | None = None,
               console: Console | None = None, store_orders: int = 240) -> DemoSummary:
    out = console or Console(log_path=False)
    started = time.monotonic()
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="ionflux-demo-"))
    out.rule("[bold]IONFLUX demo")
    async with DemoWorld(port=port, data_dir=data_dir, store_orders=store_orders) as world:
        out.log(f"[bold]1. simulators[/] on loopback: Shopify, WhatsApp Cloud API, OpenAI, SMTP sink "
                  f"(port {world.smtp.port})")
        with patched_environ(world.env):
            from ionflux.demo_run import DemoRun

            async with DemoRun(world, out) as run:
                summary = await run.play()
                summary.seconds = round(time.monotonic() - started, 1)
                render_summary(out, summary)
                if summary_json is not None:
                    await asyncio.to_thread(summary_json.write_text, summary.to_json())
                if not once:
                    out.print(f"\nIONFLUX keeps running at {world.ionflux_url} (workspace token: "
                              f"{run.token}); Ctrl-C to stop.")
                    await run.serve_forever()
    return summary


def render_summary(out: Console, s: DemoSummary) -> None:
    out.rule("[bold]summary")
    table = Table(show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("IONFLUX", justify="right")
    table.add_column("the outside world saw", justify="right")
    sim = s.simulators
    webhook_events = sum(n for t, n in s.events.items() if t in (
        "platform.shopify.events.orders.created", "platform.shopify.events.orders.paid"))
    table.add_row("Shopify webhooks → events (deduplicated)", str(webhook_events),
                  f"{sim.get('shopify_webhook_posts', 0)} signed POSTs")
    table.add_row("events published", str(sum(s.events.values())), "")
    for agent, statuses in s.runs.items():
        table.add_row(f"runs: {agent}", ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())), "")
    table.add_row("alerts (one per order)", ", ".join(s.alerts) or "none", "")
    table.add_row("emails sent", str(s.emails_sent), f"{sim.get('smtp_messages', 0)} received by SMTP")
    table.add_row("WhatsApp messages sent", str(s.whatsapp_sent), f"{sim.get('whatsapp_messages', 0)} at Graph API")
    table.add_row("embedding calls (memory)", str(s.embedding_calls), "")
    table.add_row("LLM text calls / tokens", f"{s.llm_calls} / {s.llm_tokens}",
                  f"{sim.get('openai_chat_requests', 0)} chat completions")
    table.add_row("text generation", s.models.get("text_generation", ""), "")
    table.add_row("embeddings", s.models.get("embeddings", ""), "")
    table.add_row("elapsed", f"{s.seconds} s", "")
    out.print(table)
    report = s.report
    if report:
        out.print(f"[bold]Revenue Tracker[/] (last {report.get('days')} days, {report.get('timezone')}): "
                  f"{report.get('orders')} orders, sales {report.get('sales')} {report.get('currency')}, "
                  f"average order {report.get('average_order_value')} {report.get('currency')}; top: "
                  + ", ".join(f"{p['title']} ({p['revenue']})" for p in report.get("top_products", [])[:3]))


async def wait_for(check: Any, *, within: float, what: str) -> Any:
    """Poll `check` (async) with a deadline; the demo waits for work to happen, never a fixed time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise TimeoutError(f"the demo waited {within:.0f} s for {what}")
        await asyncio.sleep(0.1)

