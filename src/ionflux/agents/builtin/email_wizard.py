"""Email Wizard: a RAG-drafted follow-up for paid high-value orders, with a WhatsApp fallback when the
mail is not opened in time.

Paid order (>= `min_order_value`) -> similar past buyers and the brand voice from memory -> a draft from
the LLM -> sent through the EmailService (its open/click events come back on the bus) -> remembered as
a pending follow-up. Every schedule tick (or manual run) sends the WhatsApp template for follow-ups
not opened after `followup_after_hours` — the MessagingService refuses contacts without consent.
Times come from `ctx.clock`, so tests move the clock instead of waiting a day.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ionflux.agents.context import AgentContext, Trigger
from ionflux.agents.orders import money, order_from_event
from ionflux.agents.ports import MemoryItem, MemoryMatch, NoConsent, Order
from ionflux.core.errors import IonfluxError, ServiceUnavailable

SYSTEM = ("You write one short, personal follow-up email from a shop to a customer who just paid. "
          "First line: 'Subject: ...'. Then the body, plain text, under 120 words, no invented facts.")


class EmailWizard:
    async def run(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        topic = trigger.event_type or ""
        if topic.endswith(".orders.paid"):
            return await self.on_paid(ctx, trigger)
        if topic.endswith((".messages.opened", ".messages.clicked")):
            return await self.on_opened(ctx, str(trigger.event_data.get("message_id") or ""))
        return await self.follow_up(ctx)

    async def on_paid(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        order = order_from_event(trigger.event_data)
        if order is None:
            return {"action": "skipped", "reason": "the event carries no order"}
        floor = money(ctx.config["min_order_value"], "yaml_config.min_order_value")
        if order.total_price < floor:
            return {"action": "skipped", "order_id": order.id,
                    "reason": f"{order.total_price} {order.currency} is below the segment's {floor}"}
        email = order.customer.email if order.customer else None
        if not email:
            return {"action": "skipped", "order_id": order.id,
                    "reason": "no customer email on the order (customer data is redacted unless PII is enabled)"}
        if await ctx.state.get(f"order:{order.id}") is not None:
            return {"action": "skipped", "order_id": order.id, "reason": "already followed up"}

        buyers, voice, memory = await self._recall(ctx, order)
        completion = await ctx.llm.generate(_prompt(order, buyers, voice), system_prompt=SYSTEM,
                                            model=ctx.config.get("model"), max_tokens=int(ctx.config["max_tokens"]),
                                            temperature=0.7)
        subject, body = _split_draft(completion.text, order)
        sent = await ctx.email.send(sender=ctx.config["sender"], to=email, subject=subject, text=body,
                                    tags=["email_wizard", "followup"],
                                    idempotency_key=ctx.idempotency_key("followup"))
        now = ctx.clock()
        due = now + timedelta(hours=float(ctx.config["followup_after_hours"]))
        customer = order.customer
        ctx.state.put(f"order:{order.id}", {"message_id": sent.message_id})
        ctx.state.put(f"followup:{sent.message_id}", {
            "order_id": order.id, "order_name": order.name, "email": email,
            "phone": customer.phone if customer else None, "first_name": customer.first_name if customer else None,
            "sent_at": now.isoformat(), "due_at": due.isoformat()})
        await self._remember_buyer(ctx, order)
        return {"action": "emailed", "order_id": order.id, "message_id": sent.message_id, "subject": subject,
                "model": completion.model, "tokens": completion.total_tokens, "similar_buyers": len(buyers),
                "memory": memory, "followup_due_at": due.isoformat()}

    async def on_opened(self, ctx: AgentContext, message_id: str) -> dict[str, Any]:
        pending = await ctx.state.get(f"followup:{message_id}") if message_id else None
        if pending is None:
            return {"action": "ignored", "message_id": message_id}
        ctx.state.delete(f"followup:{message_id}")
        ctx.state.put(f"done:{message_id}", {**pending, "outcome": "opened", "at": ctx.clock().isoformat()})
        return {"action": "opened", "message_id": message_id, "order_id": pending["order_id"]}

    async def follow_up(self, ctx: AgentContext) -> dict[str, Any]:
        now = ctx.clock()
        outcomes: dict[str, int] = {"whatsapp_sent": 0, "no_consent": 0, "no_phone": 0, "errors": 0}
        for key, pending in await ctx.state.items("followup:"):
            if datetime.fromisoformat(pending["due_at"]) > now:
                continue
            message_id = key.removeprefix("followup:")
            outcome: dict[str, Any] = {}
            if not pending.get("phone"):
                outcome = {"outcome": "no_phone"}
            else:
                try:
                    sent = await ctx.whatsapp.send_template(
                        to=pending["phone"], template=ctx.config["whatsapp_template"],
                        language=ctx.config["whatsapp_language"],
                        body_parameters=[pending.get("first_name") or "there", pending["order_name"]])
                    outcome = {"outcome": "whatsapp_sent", "whatsapp_message_id": sent.message_id}
                except NoConsent:
                    outcome = {"outcome": "no_consent"}
                except IonfluxError as exc:  # stays pending: tried again on the next tick
                    ctx.log.warning("whatsapp follow-up for %s failed: %s", message_id, exc.code)
                    outcomes["errors"] += 1
                    continue
            outcomes[outcome["outcome"]] += 1
            ctx.state.delete(key)
            ctx.state.put(f"done:{message_id}", {**pending, **outcome, "at": now.isoformat()})
        return {"action": "followups", **outcomes}

    async def _recall(self, ctx: AgentContext, order: Order) -> tuple[list[MemoryMatch], str, str]:
        voice = str(ctx.config["brand_voice"])
        try:
            n = int(ctx.config["similar_buyers"])
            buyers = (await ctx.memory.query(text=_basket(order), top_k=n, filter={"kind": {"$eq": "buyer"}})
                      if n else [])
            voices = await ctx.memory.query(text="brand voice", top_k=2, filter={"kind": {"$eq": "brand_voice"}})
        except ServiceUnavailable:
            return [], voice, "unavailable"
        voice = "; ".join([*(str(v.metadata.get("text")) for v in voices if v.metadata.get("text")), voice])
        return [b for b in buyers if b.metadata.get("order_id") != order.id], voice, ctx.memory.namespace

    async def _remember_buyer(self, ctx: AgentContext, order: Order) -> None:
        who = (order.customer.id if order.customer and order.customer.id else None) or order.id
        text = f"Paid {order.total_price} {order.currency} for {_basket(order)}"
        try:
            await ctx.memory.upsert([MemoryItem(id=f"buyer-{who}-{order.id}", text=text, metadata={
                "kind": "buyer", "order_id": order.id, "customer_id": who, "text": text,
                "total_price": str(order.total_price), "currency": order.currency})])
        except ServiceUnavailable:
            pass


def _basket(order: Order) -> str:
    return ", ".join(f"{li.quantity} x {li.title}" for li in order.line_items) or "an order"


def _prompt(order: Order, buyers: list[MemoryMatch], voice: str) -> str:
    name = order.customer.first_name if order.customer and order.customer.first_name else "the customer"
    similar = "\n".join(f"- {b.metadata.get('text', b.id)}" for b in buyers) or "- (none yet)"
    total: Decimal = order.total_price
    return (f"Brand voice: {voice}\nCustomer: {name}\nOrder {order.name}: {_basket(order)}; total {total} "
            f"{order.currency}.\nWhat similar buyers bought:\n{similar}\n"
            "Thank them, mention one thing they bought, suggest one related product if it fits.")


def _split_draft(text: str, order: Order) -> tuple[str, str]:
    lines = text.strip().splitlines()
    if lines and lines[0].lower().startswith("subject:"):
        subject = lines[0].split(":", 1)[1].strip()
        body = "\n".join(lines[1:]).strip()
    else:
        subject, body = "", text.strip()
    return (subject or f"Thank you for your order {order.name}")[:200], body or f"Thank you for order {order.name}."
