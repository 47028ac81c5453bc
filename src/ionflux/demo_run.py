"""The demo's steps against a running IONFLUX: the same HTTP API a customer's code would use."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from decimal import Decimal
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from ionflux.client import IonfluxClient
from ionflux.demo import BURST, FOLLOWUP_SECONDS, DemoSummary, wait_for
from ionflux.demo_watch import AGENT_NAMES, EventWatcher
from ionflux.demo_world import ALERT_TEMPLATE, FOLLOWUP_TEMPLATE, OWNER_PHONE, SHOP, DemoWorld
from ionflux.llm.providers.local import EMBEDDING_MODELS

LOCAL_TEXT_MODEL = "local:smollm2-135m-instruct"  # used when llama-cpp-python and a GGUF model are installed


class DemoRun:
    def __init__(self, world: DemoWorld, out: Console) -> None:
        self.world, self.out = world, out
        self.token = ""
        self.workspace_id = ""
        self.connection_id = ""
        self.configs: dict[str, str] = {}
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._warm: asyncio.Task[Any] | None = None
        self.client: IonfluxClient | None = None
        self.watcher: EventWatcher | None = None

    # -- IONFLUX itself ------------------------------------------------------------------------------
    async def __aenter__(self) -> DemoRun:
        from ionflux.app import create_app
        from ionflux.core.db import Database
        from ionflux.core.observability import configure_logging
        from ionflux.core.platform import Platform
        from ionflux.core.settings import load_settings

        settings = load_settings()
        configure_logging(settings.log_level)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(Database(settings.effective_database_url).upgrade)
        self.platform = Platform.from_settings(settings)
        app = create_app(self.platform)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.world.port, log_config=None, access_log=False,
                                lifespan="on")
        self._server = uvicorn.Server(config)
        self._serving = asyncio.create_task(self._server.serve())
        await wait_for(self._healthy, within=120, what="IONFLUX to start")
        self.out.log(f"[bold]2. IONFLUX[/] serving at {self.world.ionflux_url} "
                       f"(data in {settings.data_dir}, embedded bus, SQLite)")
        created = await self.platform.workspaces.create("Acme Outfitters")
        self.workspace_id, self.token = created.id, created.token
        self.client = IonfluxClient(self.world.ionflux_url, self.token)
        self.watcher = EventWatcher(self.client, self.out)
        self.out.log(f"[bold]3. workspace[/] {created.id} created, with a workspace token")
        # The local embedding model takes a while to load: start it now, while the store connects.
        self._warm = asyncio.create_task(self.api.request("POST", "/v1/llm/requests", json={
            "task_type": "embedding", "text_to_embed": "warm-up"}))
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._warm is not None and not self._warm.done():
            self._warm.cancel()
        if self.watcher is not None:
            with contextlib.suppress(Exception):
                await self.watcher.stop()
        if self.client is not None:
            await self.client.aclose()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await asyncio.gather(self._serving, return_exceptions=True)

    async def _healthy(self) -> bool:
        if self._serving is not None and self._serving.done():
            self._serving.result()  # surfaces the start-up error
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{self.world.ionflux_url}/healthz", timeout=2)).status_code == 200
        except httpx.HTTPError:
            return False

    async def serve_forever(self) -> None:
        if self._serving is not None:
            await self._serving

    @property
    def api(self) -> IonfluxClient:
        assert self.client is not None
        return self.client

    # -- the story -----------------------------------------------------------------------------------
    async def play(self) -> DemoSummary:
        assert self.watcher is not None
        await self.connect_store()
        await self.backfill()
        await self.connect_whatsapp()
        await self.configure_agents()
        await self.watcher.drain()  # everything so far is set-up: counted, not printed
        self.watcher.quiet = False
        self.watcher.start()
        fired = await self.fire_webhooks()
        self.out.log("   every order handled: one Sales Sentinel run per event, one Email Wizard run per paid order")
        await self.follow_up_fallback()
        report = await self.revenue_report()
        await self.settle()
        await self.watcher.stop()
        return await self.summary(fired, report)

    async def connect_store(self) -> None:
        await self.api.request("PUT", "/v1/shopify/settings", json={"pii_enabled": True})
        start = await self.api.raw("GET", "/integrations/shopify/auth/initiate", params={"shop": SHOP})
        # The merchant's browser: consent at Shopify, back to us. A browser waits minutes, not httpx's 5 s default
        # (the callback exchanges the code, registers 8 webhook topics and fetches the shop before it answers).
        async with httpx.AsyncClient(timeout=120) as browser:
            consent = await browser.get(start.headers["location"])
            callback = urlsplit(consent.headers["location"])
            answer = await browser.get(f"{self.world.ionflux_url}{callback.path}?{callback.query}")
        answer.raise_for_status()
        connection = answer.json()
        self.connection_id = connection["id"]
        shop = await self.api.request("GET", f"/v1/shopify/connections/{self.connection_id}/shop")
        self.out.log(f"[bold]4. Shopify[/] {shop['name']} connected through OAuth (HMAC-checked callback, "
                       f"expiring token in the vault), {len(shop['webhooks'])} webhook subscriptions, "
                       f"{shop['currency']}, {shop['iana_timezone']}")

    async def backfill(self) -> None:
        path = f"/v1/shopify/connections/{self.connection_id}/sync"
        await self.api.request("POST", path, json={"kind": "backfill"})
        total = len(self.world.shopify.state(SHOP).data.orders)
        with Progress(TextColumn("[bold]5. backfill[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} "
                      "orders"), console=self.out, transient=False) as bar:
            task = bar.add_task("orders", total=total)

            async def done() -> bool:
                run = await self.api.request("GET", path)
                bar.update(task, completed=min(total, int(run.get("orders") or 0)))
                if run["status"] in ("failed", "stopped"):
                    raise RuntimeError(f"backfill {run['status']}: {run.get('error')}")
                return bool(run["status"] == "completed")

            await wait_for(done, within=150, what="the Shopify backfill")
            bar.update(task, completed=total)

    async def connect_whatsapp(self) -> None:
        phone_id, waba = self.world.waba
        await self.api.request("POST", "/v1/whatsapp/numbers", json={
            "phone_number_id": phone_id, "waba_id": waba, "display_phone_number": "15550001111"})
        await self._opt_in(OWNER_PHONE, "store owner, alerts")
        self.out.log("[bold]6. WhatsApp[/] number 15550001111 connected (platform token), owner opted in")

    async def _opt_in(self, wa_id: str, why: str) -> None:
        await self.api.request("PUT", f"/v1/whatsapp/contacts/{wa_id}/consent",
                               json={"source": "demo", "text_shown": f"Yes, Acme may message me ({why})"})

    async def configure_agents(self) -> None:
        agents = self.api.agents
        self.configs["shopify_sales_sentinel"] = (await agents.configure("shopify_sales_sentinel", {
            "threshold": 100, "channel": "whatsapp", "recipient": OWNER_PHONE,
            "whatsapp_template": ALERT_TEMPLATE}, name="Big-order alerts"))["id"]
        self.configs["revenue_tracker_lite"] = (await agents.configure("revenue_tracker_lite", {"days": 7}))["id"]
        wizard_config: dict[str, Any] = {
            "sender": "Acme Outfitters <hello@acme.example>", "min_order_value": 120,
            "followup_after_hours": FOLLOWUP_SECONDS / 3600, "whatsapp_template": FOLLOWUP_TEMPLATE}
        if self.world.local_text_model:
            wizard_config["model"] = LOCAL_TEXT_MODEL
        wizard = await agents.configure("email_wizard", wizard_config)
        self.configs["email_wizard"] = wizard["id"]
        namespace = wizard["external_memory_namespace"]
        await self._seed_memory(namespace)
        self.out.log(f"[bold]7. agents[/] configured: {', '.join(AGENT_NAMES[k] for k in self.configs)}; "
                       f"Email Wizard's memory {namespace} holds the brand voice and past buyers")

    async def _seed_memory(self, namespace: str) -> None:
        if self._warm is not None:
            await self._warm
        orders = (await self.api.request("GET", f"/v1/shopify/connections/{self.connection_id}/orders",
                                         params={"limit": 250}))["orders"]
        biggest = sorted(orders, key=lambda o: Decimal(o["total_price"]), reverse=True)[:8]
        items = [{"id": "brand-voice", "text": "brand voice: friendly, outdoorsy, never pushy",
                  "metadata": {"kind": "brand_voice", "text": "friendly, outdoorsy, never pushy"}}]
        for o in biggest:
            basket = ", ".join(f"{li['quantity']} x {li['title']}" for li in o["line_items"])
            text = f"Paid {o['total_price']} {o['currency']} for {basket}"
            items.append({"id": f"buyer-{o['id']}", "text": text,
                          "metadata": {"kind": "buyer", "text": text, "order_id": o["id"]}})
        await self.api.request("POST", "/v1/memory/namespaces", json={"name": namespace})
        await self.api.request("PUT", f"/v1/memory/namespaces/{namespace}/vectors", json={"vectors": items})

    async def fire_webhooks(self) -> list[dict[str, Any]]:
        sim = self.world.shopify
        self.out.log("[bold]8. the store[/] sells: a burst of signed webhooks (with duplicates)")
        customers = sim.state(SHOP).data.customers
        fired = []
        for i, (total, paid, consent) in enumerate(BURST):
            order = sim.create_order(SHOP)
            customer = customers[i % len(customers)]
            item = dict(order["line_items"][0], quantity=1, price=total)
            order = sim.update_order(SHOP, order["id"], total_price=total, subtotal_price=total, total_tax="0.00",
                                     line_items=[item], financial_status="paid" if paid else "pending",
                                     customer=dict(customer), email=customer["email"], phone=customer["phone"])
            if consent:
                await self._opt_in(str(customer["phone"]).lstrip("+"), "order updates")
            sent: list[tuple[str, str]] = [("orders/create", str(uuid.uuid4()))]
            if i == 0:
                sent.append(sent[0])  # Shopify retries a delivery under the same event id
                sent.append(("orders/create", str(uuid.uuid4())))  # and now and then re-sends under a new one
            if paid:
                sent.append(("orders/paid", str(uuid.uuid4())))
            for topic, event_id in sent:
                await sim.emit(SHOP, topic, order, event_id=event_id)
            fired.append({"id": str(order["id"]), "name": order["name"], "total": total, "paid": paid,
                          "consent": consent, "event_ids": sorted({e for _, e in sent})})
        await wait_for(self._burst_handled(fired), within=120, what="the agents to handle the burst")
        return fired

    def _burst_handled(self, fired: list[dict[str, Any]]) -> Any:
        async def check() -> bool:
            sentinel = await self._finished("shopify_sales_sentinel")
            wizard = await self._finished("email_wizard")
            return sentinel >= len(fired) and wizard >= sum(1 for f in fired if f["paid"])
        return check

    async def _finished(self, agent: str) -> int:
        runs = await self.api.agents.runs(self.configs[agent], limit=500)
        return sum(1 for r in runs if r["status"] in ("succeeded", "failed", "skipped"))

    async def follow_up_fallback(self) -> None:
        pending = await self.api.agents.state(self.configs["email_wizard"], "followup:")
        if not pending:
            return
        due = max(str(v["due_at"]) for _, v in pending)
        self.out.log(f"[bold]9. follow-ups[/] {len(pending)} email(s) not opened yet; WhatsApp fallback due at "
                       f"{due[11:19]} UTC (24 h, shortened to {FOLLOWUP_SECONDS:g} s for the demo)")
        await wait_for(self._past(due), within=FOLLOWUP_SECONDS + 30, what="the follow-up delay")
        await self.api.agents.run(self.configs["email_wizard"], {"reason": "follow-up check"})

    def _past(self, moment: str) -> Any:
        from datetime import datetime

        from ionflux.core.models import utcnow

        async def check() -> bool:
            return utcnow() >= datetime.fromisoformat(moment)
        return check

    async def revenue_report(self) -> dict[str, Any]:
        self.out.log("[bold]10. Revenue Tracker[/] on demand, last 7 days in the shop's time zone")
        run = await self.api.agents.run(self.configs["revenue_tracker_lite"])
        if run["status"] != "succeeded":
            raise RuntimeError(f"Revenue Tracker failed: {run.get('error')}")
        self.out.print(run["output"]["markdown"])
        return dict(run["output"]["report"])

    async def settle(self) -> None:
        """Wait for the WhatsApp delivery reports and the SMTP hand-offs the steps above started."""
        async def quiet() -> bool:
            assert self.watcher is not None
            await self.watcher.drain()
            sent = await self._whatsapp_accepted()
            delivered = self.watcher.counts["platform.whatsapp.events.messages.status"]
            emails = await self.api.request("GET", "/v1/email/messages", params={"status": "queued"})
            return delivered >= sent and not emails["messages"]
        await wait_for(quiet, within=60, what="delivery reports")

    async def _whatsapp_accepted(self) -> int:
        return len(self.world.whatsapp.sent)

    async def summary(self, fired: list[dict[str, Any]], report: dict[str, Any]) -> DemoSummary:
        assert self.watcher is not None
        s = DemoSummary(workspace_id=self.workspace_id, orders_fired=fired, report=report)
        s.events = dict(self.watcher.counts)
        for agent, cfg in self.configs.items():
            runs = await self.api.agents.runs(cfg, limit=500)
            s.runs[AGENT_NAMES[agent]] = dict(Counter(r["status"] for r in runs))
        s.alerts = [str(e["data"]["order_name"]) for e in self.watcher.events
                    if e["type"] == "platform.agents.events.alerts.created"]
        emails = await self.api.request("GET", "/v1/email/messages", params={"limit": 500})
        s.emails_sent = sum(1 for m in emails["messages"] if m.get("status") not in ("queued", "failed"))
        s.whatsapp_sent = await self._whatsapp_sent_by_ionflux()
        usage = await self.api.request("GET", "/v1/llm/usage", params={"since": "2000-01-01T00:00:00Z",
                                                                        "group_by": "model"})
        embedding = {f"local:{name}" for name in EMBEDDING_MODELS}
        generation = [g for g in usage["groups"] if g["model"] not in embedding]
        s.llm_calls = sum(int(g["requests"]) for g in generation)
        s.llm_tokens = sum(int(g["total_tokens"]) for g in generation)
        s.embedding_calls = sum(int(g["requests"]) for g in usage["groups"] if g["model"] in embedding)
        s.models = {
            "text_generation": f"{LOCAL_TEXT_MODEL} (llama.cpp)" if self.world.local_text_model
            else "OpenAI simulator (openai:gpt-4o; no local text model installed)",
            "embeddings": "local all-MiniLM-L6-v2" if self.world.local_embeddings else "none installed",
        }
        s.simulators = {
            "shopify_webhook_posts": sum(r.attempts for _, _, r in self.world.shopify.deliveries)
            + int(self.world.shopify.stats.get("webhooks_duplicated", 0)),
            "smtp_messages": len(self.world.smtp.messages),
            "whatsapp_messages": len(self.world.whatsapp.sent),
            "openai_chat_requests": sum(1 for r in self.world.openai_server.requests
                                        if r.path.endswith("/chat/completions")),
        }
        s.simulators.update(self._shop_figures(report))
        return s

    def _shop_figures(self, report: dict[str, Any]) -> dict[str, Any]:
        """What the store itself holds for the report's period (its own orders, summed here in Decimal)."""
        from datetime import datetime

        start, end = datetime.fromisoformat(report["from"]), datetime.fromisoformat(report["to"])
        orders = [o for o in self.world.shopify.state(SHOP).data.orders
                  if start <= datetime.fromisoformat(o["created_at"].replace("Z", "+00:00")) <= end
                  and not o.get("cancelled_at")]
        return {"shop_orders_in_report_period": len(orders),
                "shop_sales_in_report_period": str(sum((Decimal(o["total_price"]) for o in orders), Decimal(0)))}

    async def _whatsapp_sent_by_ionflux(self) -> int:
        count = 0
        for agent in ("shopify_sales_sentinel", "email_wizard"):
            for run in await self.api.agents.runs(self.configs[agent], limit=500):
                out = run.get("output") or {}
                count += 1 if (agent == "shopify_sales_sentinel" and out.get("alerted")) else 0
                count += int(out.get("whatsapp_sent") or 0)
        return count

