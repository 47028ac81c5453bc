"""The ports of an in-process agent run, over the services this process runs.

Memory, email and WhatsApp go through each service's public Python interface
(`platform.services[name]`); LLM text generation and Shopify reads, which those services publish as
HTTP only, go through the in-process loopback (`agents.loopback`). A service that does not run here
gives an `Unavailable` port whose every call says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ionflux.agents.context import Unavailable
from ionflux.agents.definitions import AgentDefinition
from ionflux.agents.loopback import Loopback
from ionflux.agents.models import AgentConfigurationRow
from ionflux.agents.ports import MemoryItem, MemoryMatch, SentMessage, address
from ionflux.client.services import HttpLLM, HttpShopify, WhatsAppSender

if TYPE_CHECKING:
    from ionflux.agents.runner import PortsFactory
    from ionflux.core.platform import Platform

PORTS = ("llm", "email", "whatsapp", "memory", "shopify")


class ServiceEmail:
    """`EmailPort` over the EmailService's `EmailSender` interface."""

    def __init__(self, email: Any, workspace_id: str) -> None:
        self._email, self._ws = email, workspace_id

    async def send(self, *, sender: str, to: str, subject: str, text: str, html: str | None = None,
                   tags: Sequence[str] = (), idempotency_key: str | None = None) -> SentMessage:
        from ionflux.email.schemas import SendRequest

        request = SendRequest.model_validate({
            "from": address(sender), "to": [to], "subject": subject, "text": text, "html": html, "tags": list(tags),
            "idempotency_key": idempotency_key})
        result = await self._email.send(self._ws, request)
        return SentMessage(message_id=result.message_id, status="refused" if result.refused else result.status)


class ServiceWhatsApp(WhatsAppSender):
    """`WhatsAppPort` over the MessagingService's `Messaging` interface (channel "whatsapp")."""

    def __init__(self, messaging: Any, workspace_id: str) -> None:
        self._messaging, self._ws = messaging, workspace_id

    async def _post(self, body: dict[str, Any]) -> Mapping[str, Any]:
        from ionflux.messaging.validation import SendRequest

        view: Mapping[str, Any] = await self._messaging.send(self._ws, "whatsapp", SendRequest.model_validate(body))
        return view


class ServiceMemory:
    """`MemoryPort` over `platform.services["memory"].for_workspace(ws)`, bound to one namespace, which is
    created (with the service's default embedding dimension) on first use."""

    def __init__(self, memory: Any, namespace: str) -> None:
        self._memory, self._namespace = memory, namespace
        self._ready = False

    @property
    def namespace(self) -> str:
        return self._namespace

    async def _ensure(self) -> None:
        if not self._ready:
            await self._memory.create_namespace(self._namespace)  # finds it when it exists
            self._ready = True

    async def upsert(self, items: Sequence[MemoryItem]) -> None:
        from ionflux.memory.interface import UpsertItem

        await self._ensure()
        await self._memory.upsert(self._namespace, [
            UpsertItem(id=i.id, values=i.values, text=i.text, metadata=dict(i.metadata)) for i in items])

    async def query(self, *, text: str | None = None, vector: Sequence[float] | None = None, top_k: int = 5,
                    filter: Mapping[str, Any] | None = None) -> list[MemoryMatch]:
        await self._ensure()
        matches = await self._memory.query(self._namespace, text=text, vector=vector, top_k=top_k, filter=filter)
        return [MemoryMatch(id=m.id, score=m.score, metadata=dict(m.metadata or {})) for m in matches]

    async def fetch(self, ids: Sequence[str]) -> dict[str, MemoryMatch]:
        await self._ensure()
        return {r.id: MemoryMatch(id=r.id, score=1.0, metadata=dict(r.metadata))
                for r in await self._memory.fetch(self._namespace, ids)}


def platform_ports(platform: Platform, loopback: Loopback) -> PortsFactory:

    def build(workspace_id: str, cfg: AgentConfigurationRow, definition: AgentDefinition) -> dict[str, Any]:
        services = platform.services
        ports: dict[str, Any] = {name: Unavailable(name) for name in PORTS}
        if "llm" in services:
            ports["llm"] = HttpLLM(loopback.client(workspace_id), definition.default_model)
        if "shopify" in services:
            ports["shopify"] = HttpShopify(loopback.client(workspace_id), cfg.effective_config.get("connection_id"))
        if "email" in services:
            ports["email"] = ServiceEmail(services["email"], workspace_id)
        if "messaging" in services:
            ports["whatsapp"] = ServiceWhatsApp(services["messaging"], workspace_id)
        if "memory" in services and cfg.external_memory_namespace:
            ports["memory"] = ServiceMemory(services["memory"].for_workspace(workspace_id),  # type: ignore[attr-defined]
                                            cfg.external_memory_namespace)
        elif cfg.external_memory_namespace is None:
            ports["memory"] = Unavailable("memory (this definition declares none)")
        return ports

    return build

