"""What the demo shows while it runs: each step of the flow as IONFLUX publishes it, read from the
workspace's own event log (`GET /v1/events`), one line per step, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

from rich.console import Console

from ionflux.client import IonfluxClient

AGENT_NAMES = {"shopify_sales_sentinel": "Sales Sentinel", "revenue_tracker_lite": "Revenue Tracker",
               "email_wizard": "Email Wizard"}


class EventWatcher:
    """Follows the event log; prints the steps a person wants to see and counts everything."""

    def __init__(self, client: IonfluxClient, console: Console) -> None:
        self.client = client
        self.console = console
        self.counts: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.quiet = True  # backfill publishes thousands of events: count them, print the live ones
        self._after: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading = asyncio.Lock()  # the follower and an explicit drain must not read the same page twice

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.drain()

    async def drain(self) -> None:
        async with self._reading:
            await self._drain()

    async def _drain(self) -> None:
        while True:
            page, following = await self.client.events.list(after=self._after, limit=500)
            for event in page:
                self._after = event["id"]
                self.events.append(event)
                self.counts[event["type"]] += 1
                if not self.quiet:
                    await self._show(event)
            if following is None:
                return

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.drain()
            await asyncio.sleep(0.1)

    async def _show(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        line = None
        if kind.startswith("platform.shopify.events.orders.") and data.get("webhook_delivery_id"):
            order = (data.get("payload") or {}).get("order") or {}
            line = (f"[green]webhook verified[/] → event published  {kind.rsplit('.', 1)[1]:<8} "
                    f"order {order.get('name')} {order.get('total_price')} {order.get('currency')}")
        elif kind == "platform.agents.events.runs.succeeded" or kind == "platform.agents.events.runs.failed":
            line = await self._run_line(data, ok=kind.endswith("succeeded"))
        elif kind == "platform.agents.events.alerts.created":
            line = f"[red]alert[/] order {data.get('order_name')} {data.get('total_price')} {data.get('currency')}"
        elif kind.startswith("platform.email.events.messages."):
            to = f" → {data['recipient']}" if data.get("recipient") else ""
            line = f"[blue]email {data.get('status')}[/]{to} (message {str(data.get('message_id'))[:8]})"
        elif kind == "platform.whatsapp.events.messages.status":
            line = f"[cyan]WhatsApp {data.get('status')}[/] ← delivery report from the phone"
        elif kind == "platform.agents.events.reports.created":
            report = data.get("report") or {}
            line = f"[magenta]report[/] {report.get('orders')} orders, {report.get('sales')} {report.get('currency')}"
        if line:
            self.console.print(f"  {line}")

    async def _run_line(self, data: dict[str, Any], *, ok: bool) -> str:
        name = AGENT_NAMES.get(str(data.get("definition_id")), str(data.get("definition_id")))
        if not ok:
            return f"[red]agent run failed[/] {name}: {data.get('error')}"
        out: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            out = (await self.client.agents.get_run(str(data["run_id"]))).get("output") or {}
        detail = ""
        if "alerted" in out:
            detail = "alert sent by WhatsApp" if out["alerted"] else f"no alert ({out.get('reason')})"
        elif out.get("action") == "emailed":
            detail = (f"LLM call {out.get('model')} ({out.get('tokens')} tokens) → email queued to the customer, "
                      f"WhatsApp fallback due {out.get('followup_due_at', '')[11:19]}")
        elif out.get("action") == "followups":
            detail = (f"follow-ups: {out.get('whatsapp_sent')} WhatsApp sent, {out.get('no_consent')} without "
                      "consent")
        elif out.get("action"):
            detail = f"{out['action']} {out.get('reason', '')}".strip()
        elif "report" in out:
            detail = "report ready"
        return f"[yellow]agent run[/] {name} ({data.get('duration_ms')} ms) {detail}"
