"""Small real in-process implementations of the agent ports, for behaviour tests of the agents alone.

They keep what they were asked in lists and behave like the services on the points agents rely on
(idempotency keys, consent refusals, metadata filters, deterministic token counts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ionflux.agents.ports import (
    Completion,
    MemoryItem,
    MemoryMatch,
    NoConsent,
    Order,
    SentMessage,
    ShopInfo,
)
from ionflux.core.errors import ProviderUnavailable


class FakeLLM:
    def __init__(self) -> None:
        self.prompts: list[tuple[str, str | None]] = []

    async def generate(self, prompt: str, *, system_prompt: str | None = None, model: str | None = None,
                       max_tokens: int | None = None, temperature: float | None = None) -> Completion:
        self.prompts.append((prompt, system_prompt))
        text = f"Subject: Thanks from us\nHello! We hope you enjoy it. ({len(prompt)} chars of context)"
        return Completion(text=text, model=model or "openai:gpt-4o", prompt_tokens=len(prompt.split()),
                          completion_tokens=len(text.split()))

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        return [[float(len(t)), 1.0] for t in texts]


@dataclass
class FakeEmail:
    sent: list[dict[str, Any]] = field(default_factory=list)
    failing: bool = False
    _by_key: dict[str, SentMessage] = field(default_factory=dict)

    async def send(self, *, sender: str, to: str, subject: str, text: str, html: str | None = None,
                   tags: Sequence[str] = (), idempotency_key: str | None = None) -> SentMessage:
        if self.failing:
            raise ProviderUnavailable("the mail provider is down")
        if idempotency_key and idempotency_key in self._by_key:
            return self._by_key[idempotency_key]
        message = SentMessage(message_id=f"em-{len(self.sent) + 1}", status="queued")
        self.sent.append({"from": sender, "to": to, "subject": subject, "text": text, "tags": list(tags),
                          "message_id": message.message_id})
        if idempotency_key:
            self._by_key[idempotency_key] = message
        return message


@dataclass
class FakeWhatsApp:
    consented: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send_text(self, *, to: str, body: str) -> SentMessage:
        return self._record(to, {"type": "text", "body": body})

    async def send_template(self, *, to: str, template: str, language: str,
                            body_parameters: Sequence[str] = ()) -> SentMessage:
        return self._record(to, {"type": "template", "template": template, "language": language,
                                 "parameters": list(body_parameters)})

    def _record(self, to: str, content: dict[str, Any]) -> SentMessage:
        if to not in self.consented:
            raise NoConsent(f"{to} has not opted in")
        self.sent.append({"to": to, **content})
        return SentMessage(message_id=f"wa-{len(self.sent)}", status="accepted")


class FakeMemory:
    def __init__(self, namespace: str = "ns") -> None:
        self._namespace = namespace
        self.items: dict[str, MemoryItem] = {}

    @property
    def namespace(self) -> str:
        return self._namespace

    async def upsert(self, items: Sequence[MemoryItem]) -> None:
        for item in items:
            self.items[item.id] = item

    async def query(self, *, text: str | None = None, vector: Sequence[float] | None = None, top_k: int = 5,
                    filter: Mapping[str, Any] | None = None) -> list[MemoryMatch]:
        words = set((text or "").lower().split())
        scored = []
        for item in self.items.values():
            if filter and any(item.metadata.get(k) != cond.get("$eq") for k, cond in filter.items()):
                continue
            overlap = len(words & set((item.text or "").lower().split()))
            scored.append(MemoryMatch(id=item.id, score=float(overlap), metadata=dict(item.metadata)))
        return sorted(scored, key=lambda m: (-m.score, m.id))[:top_k]

    async def fetch(self, ids: Sequence[str]) -> dict[str, MemoryMatch]:
        return {i: MemoryMatch(id=i, score=1.0, metadata=dict(self.items[i].metadata)) for i in ids if i in self.items}


@dataclass
class FakeShopify:
    info: ShopInfo = field(default_factory=lambda: ShopInfo("Demo Store", "USD", "America/Los_Angeles"))
    stock: list[Order] = field(default_factory=list)
    asked_since: list[datetime | None] = field(default_factory=list)

    async def shop(self) -> ShopInfo:
        return self.info

    async def orders(self, *, since: datetime | None = None) -> list[Order]:
        self.asked_since.append(since)
        return [o for o in self.stock if since is None or o.created_at >= since]


@dataclass
class FakeServices:
    llm: FakeLLM = field(default_factory=FakeLLM)
    email: FakeEmail = field(default_factory=FakeEmail)
    whatsapp: FakeWhatsApp = field(default_factory=FakeWhatsApp)
    memory: FakeMemory = field(default_factory=FakeMemory)
    shopify: FakeShopify = field(default_factory=FakeShopify)

    def ports(self, *_: Any) -> dict[str, Any]:
        return {"llm": self.llm, "email": self.email, "whatsapp": self.whatsapp, "memory": self.memory,
                "shopify": self.shopify}


def order_record(order_id: str, total: str, *, currency: str = "USD", created_at: str = "2026-03-10T12:00:00Z",
                 email: str | None = "ada@example.com", phone: str | None = "15551230000",
                 items: Sequence[tuple[str, str, int, str]] = (("p1", "Linen shirt", 1, "0"),),
                 financial_status: str = "paid", cancelled_at: str | None = None) -> dict[str, Any]:
    """A normalised order as the Shopify service publishes it (money as decimal strings)."""
    return {
        "id": order_id, "admin_graphql_api_id": f"gid://shopify/Order/{order_id}", "name": f"#{order_id}",
        "created_at": created_at, "updated_at": created_at, "currency": currency, "total_price": total,
        "financial_status": financial_status, "fulfillment_status": "unfulfilled", "cancelled_at": cancelled_at,
        "customer": {"id": f"c-{order_id}", "email": email, "phone": phone, "first_name": "Ada"},
        "line_items": [{"id": f"li-{pid}", "title": title, "quantity": qty, "price": price, "product_id": pid}
                       for pid, title, qty, price in items],
        "pii_redacted": email is None,
    }


def shopify_event_data(record: dict[str, Any], topic: str = "orders/create") -> dict[str, Any]:
    return {"provider": "shopify", "topic": topic, "connection_id": "conn-1", "account": "demo.myshopify.com",
            "payload": {"order": record, "pii_redacted": record.get("pii_redacted", False)}}
