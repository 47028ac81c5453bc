"""What an agent may use, as small Protocols (structural typing): LLM, email, WhatsApp, memory, Shopify
reads, events and its own state. Implemented in-process over `platform.services[...]`
(`agents.adapters`) and out-of-process over HTTP (`ionflux.client`); agents see only these."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMPort(Protocol):
    async def generate(
        self, prompt: str, *, system_prompt: str | None = None, model: str | None = None,
        max_tokens: int | None = None, temperature: float | None = None,
    ) -> Completion: ...

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]: ...


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    status: str


class EmailPort(Protocol):
    """Sends through the EmailService (tracking: its status events, `platform.email.events.messages.*`).
    `sender` is an address, or "Display Name <address>"."""

    async def send(
        self, *, sender: str, to: str, subject: str, text: str, html: str | None = None, tags: Sequence[str] = (),
        idempotency_key: str | None = None,
    ) -> SentMessage: ...


class NoConsent(Exception):
    """The contact has not opted in to (or opted out of) business-initiated WhatsApp messages."""


class WhatsAppPort(Protocol):
    """Sends through the MessagingService, which enforces the 24-hour window and opt-in: a message the
    contact has not consented to raises `NoConsent`."""

    async def send_text(self, *, to: str, body: str) -> SentMessage: ...

    async def send_template(
        self, *, to: str, template: str, language: str, body_parameters: Sequence[str] = (),
    ) -> SentMessage: ...


@dataclass(frozen=True)
class MemoryItem:
    id: str
    text: str | None = None
    values: Sequence[float] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryMatch:
    id: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)


class MemoryPort(Protocol):
    """One namespace of the vector memory (the configuration's own)."""

    @property
    def namespace(self) -> str: ...

    async def upsert(self, items: Sequence[MemoryItem]) -> None: ...

    async def query(
        self, *, text: str | None = None, vector: Sequence[float] | None = None, top_k: int = 5,
        filter: Mapping[str, Any] | None = None,
    ) -> list[MemoryMatch]: ...

    async def fetch(self, ids: Sequence[str]) -> dict[str, MemoryMatch]: ...


@dataclass(frozen=True)
class ShopInfo:
    name: str
    currency: str
    timezone: str  # IANA


@dataclass(frozen=True)
class LineItem:
    title: str
    quantity: int
    price: Decimal
    product_id: str | None = None


@dataclass(frozen=True)
class Customer:
    id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None


@dataclass(frozen=True)
class Order:
    id: str
    name: str
    created_at: datetime
    currency: str
    total_price: Decimal
    financial_status: str | None = None
    line_items: tuple[LineItem, ...] = ()
    customer: Customer | None = None
    cancelled_at: datetime | None = None


class ShopifyPort(Protocol):
    async def shop(self) -> ShopInfo: ...

    async def orders(self, *, since: datetime | None = None) -> list[Order]: ...


class EventPublisher(Protocol):
    def publish(self, type: str, data: dict[str, Any], *, subject: str | None = None) -> None:
        """Publish when the run succeeds (the event commits with the run's result)."""


class StatePort(Protocol):
    """Small durable facts per configuration; writes commit with the run's success."""

    async def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...

    def delete(self, key: str) -> None: ...

    async def items(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]: ...


def address(sender: str) -> dict[str, str]:
    """"Acme <hi@acme.example>" -> {"email": "hi@acme.example", "name": "Acme"} (the EmailService's form)."""
    from email.utils import parseaddr

    name, email = parseaddr(sender)
    return {"email": email or sender, **({"name": name} if name else {})}
