"""Revenue Tracker Lite: a sales report over the last N calendar days in the shop's time zone.

Money is summed as `Decimal`; the average order value is rounded half-up to the currency's cents.
Cancelled orders and orders in another currency than the shop's are left out (and counted as such).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ionflux.agents.context import AgentContext, Trigger
from ionflux.agents.ports import Order, ShopInfo

REPORT_TOPIC = "platform.agents.events.reports.created"
CENTS = Decimal("0.01")


class RevenueTracker:
    async def run(self, ctx: AgentContext, trigger: Trigger) -> dict[str, Any]:
        days = int(trigger.input.get("days") or ctx.config["days"])
        shop = await ctx.shopify.shop()
        now = ctx.clock()
        start, end = period(now, days, shop.timezone)
        orders = await ctx.shopify.orders(since=start)
        report = build_report(orders, shop, start, end, days, int(ctx.config["top_products"]))
        markdown = to_markdown(report)
        ctx.state.put("last_report", report)
        ctx.events.publish(REPORT_TOPIC, subject=ctx.configuration_id, data={
            "agent": ctx.definition.id, "configuration_id": ctx.configuration_id, "report": report})
        return {"report": report, "markdown": markdown}


def period(now: datetime, days: int, timezone: str) -> tuple[datetime, datetime]:
    """[local midnight `days - 1` days before today, now], as aware datetimes in the shop's zone."""
    zone = ZoneInfo(timezone)
    local_now = now.astimezone(zone)
    first_day = local_now.date() - timedelta(days=days - 1)
    return datetime.combine(first_day, time.min, tzinfo=zone), local_now


def build_report(orders: list[Order], shop: ShopInfo, start: datetime, end: datetime, days: int,
                 top_n: int) -> dict[str, Any]:
    zone = ZoneInfo(shop.timezone)
    counted: list[Order] = []
    skipped = {"cancelled": 0, "other_currency": 0}
    for order in orders:
        if not start <= order.created_at <= end:
            continue
        if order.cancelled_at is not None:
            skipped["cancelled"] += 1
        elif order.currency != shop.currency:
            skipped["other_currency"] += 1
        else:
            counted.append(order)
    sales = sum((o.total_price for o in counted), Decimal(0))
    aov = (sales / len(counted)).quantize(CENTS, rounding=ROUND_HALF_UP) if counted else Decimal("0.00")
    daily: dict[str, list[Decimal]] = {
        (start.date() + timedelta(days=i)).isoformat(): [] for i in range(days)}
    products: dict[str, dict[str, Any]] = defaultdict(lambda: {"quantity": 0, "revenue": Decimal(0)})
    for order in counted:
        daily.setdefault(order.created_at.astimezone(zone).date().isoformat(), []).append(order.total_price)
        for item in order.line_items:
            entry = products[item.product_id or item.title]
            entry["title"] = item.title
            entry["quantity"] += item.quantity
            entry["revenue"] += item.price * item.quantity
    top = sorted(products.items(), key=lambda kv: (-kv[1]["revenue"], -kv[1]["quantity"], kv[0]))[:top_n]
    return {
        "shop": shop.name, "currency": shop.currency, "timezone": shop.timezone, "days": days,
        "from": start.isoformat(), "to": end.isoformat(),
        "sales": _amount(sales), "orders": len(counted), "average_order_value": _amount(aov),
        "excluded": skipped,
        "top_products": [{"product_id": key, "title": v["title"], "quantity": v["quantity"],
                          "revenue": _amount(v["revenue"])} for key, v in top],
        "daily": [{"date": day, "orders": len(totals), "sales": _amount(sum(totals, Decimal(0)))}
                  for day, totals in sorted(daily.items())],
    }


def _amount(value: Decimal) -> str:
    return str(value.quantize(CENTS, rounding=ROUND_HALF_UP))


def to_markdown(report: dict[str, Any]) -> str:
    cur = report["currency"]
    lines = [
        f"# Revenue — {report['shop']}, last {report['days']} day(s)",
        "",
        f"{report['from'][:10]} to {report['to'][:10]} ({report['timezone']})",
        "",
        "| Sales | Orders | Average order value |",
        "|---:|---:|---:|",
        f"| {report['sales']} {cur} | {report['orders']} | {report['average_order_value']} {cur} |",
        "",
        "## Top products",
        "",
        "| Product | Quantity | Revenue |",
        "|---|---:|---:|",
        *(f"| {_cell(p['title'])} | {p['quantity']} | {p['revenue']} {cur} |" for p in report["top_products"]),
        "",
        "## By day",
        "",
        "| Date | Orders | Sales |",
        "|---|---:|---:|",
        *(f"| {d['date']} | {d['orders']} | {d['sales']} {cur} |" for d in report["daily"]),
    ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
