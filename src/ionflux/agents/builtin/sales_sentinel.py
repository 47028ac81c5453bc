"""Shopify Sales Sentinel: alert once per order whose total exceeds the threshold (decimal arithmetic)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ionflux.agents.context import AgentContext, Trigger
from ionflux.agents.orders import money, order_from_event
from ionflux.agents.ports import MemoryItem, Order
from ionflux.core.errors import ServiceUnavailable

ALERT_TOPIC = "platform.agents.events.alerts.created"


class SalesSentinel:
    async def run(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        order = order_from_event(trigger.event_data)
        if order is None:
            return {"alerted": False, "reason": "the event carries no order"}
        threshold = cents(money(ctx.config["threshold"], "yaml_config.threshold"))
        currency = ctx.config.get("currency")
        if currency and order.currency != currency:
            return {"alerted": False, "order_id": order.id,
                    "reason": f"order in {order.currency}, threshold in {currency}: not comparable"}
        if order.total_price <= threshold:
            return {"alerted": False, "order_id": order.id,
                    "reason": f"{order.total_price} {order.currency} is not above {threshold}"}
        key = f"alerted:{order.id}"
        if await ctx.state.get(key) is not None:
            return {"alerted": False, "order_id": order.id, "reason": "already alerted for this order"}

        incident = _incident(order, threshold)
        message_id = await self._notify(ctx, order, threshold)
        memory = await self._remember(ctx, order, incident)
        ctx.state.put(key, {"message_id": message_id, "total": str(order.total_price)})
        ctx.events.publish(ALERT_TOPIC, subject=order.id, data={
            "agent": ctx.definition.id, "configuration_id": ctx.configuration_id, "kind": "order_over_threshold",
            "order_id": order.id, "order_name": order.name, "total_price": str(order.total_price),
            "currency": order.currency, "threshold": str(threshold), "channel": ctx.config["channel"],
            "message_id": message_id, "summary": incident,
        })
        return {"alerted": True, "order_id": order.id, "reason": incident, "message_id": message_id,
                "memory": memory}

    async def _notify(self, ctx: AgentContext, order: Order, threshold: Decimal) -> str:
        total = f"{order.total_price} {order.currency}"
        if ctx.config["channel"] == "whatsapp":
            sent = await ctx.whatsapp.send_template(
                to=ctx.config["recipient"], template=ctx.config["whatsapp_template"],
                language=ctx.config["whatsapp_language"], body_parameters=[order.name, total, str(threshold)])
        else:
            sent = await ctx.email.send(
                sender=ctx.config["sender"], to=ctx.config["recipient"],
                subject=f"Order {order.name}: {total} is above your {threshold} {order.currency} threshold",
                text=_incident(order, threshold) + "\n\n" + _lines(order),
                tags=["shopify_sales_sentinel", "alert"], idempotency_key=ctx.idempotency_key("alert"))
        return sent.message_id

    async def _remember(self, ctx: AgentContext, order: Order, incident: str) -> str:
        try:
            await ctx.memory.upsert([MemoryItem(id=f"order-{order.id}", text=incident, metadata={
                "kind": "alert", "order_id": order.id, "total_price": str(order.total_price),
                "currency": order.currency, "created_at": order.created_at.isoformat()})])
        except ServiceUnavailable:
            return "unavailable"
        return ctx.memory.namespace


def cents(amount: Decimal) -> Decimal:
    """100 -> 100.00 and 100.1 -> 100.10 (the same value, shown like money); finer amounts stay as given."""
    exponent = amount.as_tuple().exponent
    return amount.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent > -2 else amount


def _incident(order: Order, threshold: Decimal) -> str:
    return (f"Order {order.name} ({order.id}) totals {order.total_price} {order.currency}, above the threshold of "
            f"{threshold} {order.currency}; placed {order.created_at.isoformat()}.")


def _lines(order: Order) -> str:
    return "\n".join(f"- {li.quantity} x {li.title} at {li.price} {order.currency}" for li in order.line_items)
