"""The agent ports over IONFLUX's HTTP API, so an agent can run in its own process with a workspace token:
events, LLM (`/v1/llm/requests`), email (`/v1/email/send`), WhatsApp (`/v1/whatsapp/messages`), Shopify
reads (`/v1/shopify/connections/...`) and the configuration's state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ionflux.agents.orders import order_from_record
from ionflux.agents.ports import (
    Completion,
    MemoryItem,
    MemoryMatch,
    NoConsent,
    Order,
    SentMessage,
    ShopInfo,
    address,
)
from ionflux.core.errors import Forbidden, InvalidRequest, NotFound

if TYPE_CHECKING:
    from ionflux.client.http import IonfluxClient

CONSENT_REASONS = ("no_opt_in", "opted_out")


class EventsApi:
    def __init__(self, client: IonfluxClient) -> None:
        self._c = client

    async def publish(self, type: str, data: dict[str, Any], *, subject: str | None = None) -> str:
        body: dict[str, Any] = {"type": type, "data": data}
        if subject is not None:
            body["subject"] = subject
        return str((await self._c.request("POST", "/v1/events", json=body))["id"])

    async def list(self, topic: str | None = None, *, after: str | None = None, limit: int = 100
                   ) -> tuple[list[dict[str, Any]], str | None]:
        page = await self._c.request("GET", "/v1/events", params={"topic": topic, "after": after, "limit": limit})
        return list(page["events"]), page.get("next_after")


def split_model(name: str | None) -> tuple[str | None, str | None]:
    if not name:
        return None, None
    provider, _, model = name.partition(":")
    return (provider, model) if model else (None, provider)


class HttpLLM:
    def __init__(self, client: IonfluxClient, default_model: str | None = None) -> None:
        self._c = client
        self._default = default_model

    async def _call(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self._c.request("POST", "/v1/llm/requests", json=body)
        if answer.get("status") == "error":
            error = answer.get("error") or {}
            raise InvalidRequest(str(error.get("message") or "the LLM request failed"),
                                 details={"code": error.get("code")})
        return dict(answer.get("provider_response") or {})

    async def generate(self, prompt: str, *, system_prompt: str | None = None, model: str | None = None,
                       max_tokens: int | None = None, temperature: float | None = None) -> Completion:
        provider, name = split_model(model or self._default)
        parameters = {k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature)) if v is not None}
        body = {"task_type": "text_generation", "provider": provider, "model": name, "prompt": prompt,
                "system_prompt": system_prompt, "parameters": parameters or None}
        response = await self._call({k: v for k, v in body.items() if v is not None})
        choices = response.get("choices") or [{}]
        usage = response.get("usage") or {}
        return Completion(text=str(choices[0].get("text") or ""), model=str(response.get("model_used") or name),
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> list[list[float]]:
        provider, name = split_model(model)
        body = {"task_type": "embedding", "provider": provider, "model": name, "text_to_embed": list(texts)}
        response = await self._call({k: v for k, v in body.items() if v is not None})
        vectors = response.get("embedding") or []
        return [list(map(float, v)) for v in (vectors if vectors and isinstance(vectors[0], list) else [vectors])]


class HttpEmail:
    def __init__(self, client: IonfluxClient) -> None:
        self._c = client

    async def send(self, *, sender: str, to: str, subject: str, text: str, html: str | None = None,
                   tags: Sequence[str] = (), idempotency_key: str | None = None) -> SentMessage:
        body: dict[str, Any] = {"from": address(sender), "to": [to], "subject": subject, "text": text,
                                "tags": list(tags)}
        if html is not None:
            body["html"] = html
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        result = await self._c.request("POST", "/v1/email/send", json=body)
        refused = result.get("refused") or []
        return SentMessage(message_id=str(result["message_id"]),
                           status="refused" if refused else str(result.get("status")))


class WhatsAppSender(ABC):
    """`WhatsAppPort` built on one `_post(body)` that sends a `/v1/whatsapp/messages` body somewhere
    (over HTTP here, to the in-process MessagingService in the agents bridge)."""

    @abstractmethod
    async def _post(self, body: dict[str, Any]) -> Mapping[str, Any]:
        """Send one message body; return the message view (`id`, `status`)."""

    async def _send(self, body: dict[str, Any]) -> SentMessage:
        try:
            view = await self._post(body)
        except Forbidden as exc:
            if exc.details.get("reason") in CONSENT_REASONS:
                raise NoConsent(exc.message) from None
            raise
        return SentMessage(message_id=str(view["id"]), status=str(view.get("status")))

    async def send_text(self, *, to: str, body: str) -> SentMessage:
        return await self._send({"to": to, "type": "text", "text": {"body": body}})

    async def send_template(self, *, to: str, template: str, language: str,
                            body_parameters: Sequence[str] = ()) -> SentMessage:
        content: dict[str, Any] = {"name": template, "language": {"code": language}}
        if body_parameters:
            content["components"] = [{"type": "body", "parameters": [{"type": "text", "text": str(p)}
                                                                      for p in body_parameters]}]
        return await self._send({"to": to, "type": "template", "template": content})


class HttpWhatsApp(WhatsAppSender):
    def __init__(self, client: IonfluxClient) -> None:
        self._c = client

    async def _post(self, body: dict[str, Any]) -> Mapping[str, Any]:
        view: Mapping[str, Any] = await self._c.request("POST", "/v1/whatsapp/messages", json=body)
        return view


class HttpShopify:
    """Shopify reads of one connection (`connection_id`, or the workspace's only active one)."""

    def __init__(self, client: IonfluxClient, connection_id: str | None = None) -> None:
        self._c = client
        self._connection_id = connection_id

    async def connection_id(self) -> str:
        if self._connection_id is None:
            page = await self._c.request("GET", "/v1/shopify/connections")
            active = [c for c in page.get("connections", page.get("data", [])) if c.get("status") == "active"]
            if not active:
                raise NotFound("this workspace has no active Shopify connection", field="connection_id")
            self._connection_id = str(active[0]["id"])
        return self._connection_id

    async def shop(self) -> ShopInfo:
        cid = await self.connection_id()
        shop = await self._c.request("GET", f"/v1/shopify/connections/{quote(cid)}/shop")
        return ShopInfo(name=str(shop.get("name") or shop.get("shop")), currency=str(shop.get("currency") or ""),
                        timezone=str(shop.get("iana_timezone") or "UTC"))

    async def orders(self, *, since: datetime | None = None) -> list[Order]:
        cid = await self.connection_id()
        out: list[Order] = []
        offset: int | None = 0
        while offset is not None:
            page = await self._c.request("GET", f"/v1/shopify/connections/{quote(cid)}/orders", params={
                "since": since.isoformat() if since else None, "limit": 250, "offset": offset})
            out.extend(order_from_record(o) for o in page["orders"])
            offset = page.get("next_offset")
        return out


class HttpMemory:
    """One namespace of the workspace's vector memory (`/v1/memory/namespaces/{ns}/...`), created on first use."""

    def __init__(self, client: IonfluxClient, namespace: str) -> None:
        self._c = client
        self._namespace = namespace
        self._ready = False

    @property
    def namespace(self) -> str:
        return self._namespace

    def _path(self, action: str) -> str:
        return f"/v1/memory/namespaces/{quote(self._namespace)}/{action}"

    async def _ensure(self) -> None:
        if not self._ready:
            await self._c.request("POST", "/v1/memory/namespaces", json={"name": self._namespace})
            self._ready = True

    async def upsert(self, items: Sequence[MemoryItem]) -> None:
        await self._ensure()
        vectors = [{"id": i.id, "text": i.text, "values": list(i.values) if i.values is not None else None,
                    "metadata": dict(i.metadata)} for i in items]
        await self._c.request("PUT", self._path("vectors"),
                              json={"vectors": [{k: v for k, v in x.items() if v is not None} for x in vectors]})

    async def query(self, *, text: str | None = None, vector: Sequence[float] | None = None, top_k: int = 5,
                    filter: Mapping[str, Any] | None = None) -> list[MemoryMatch]:
        await self._ensure()
        body: dict[str, Any] = {"top_k": top_k, "include_metadata": True}
        if text is not None:
            body["text"] = text
        if vector is not None:
            body["vector"] = list(vector)
        if filter:
            body["filter"] = dict(filter)
        answer = await self._c.request("POST", self._path("query"), json=body)
        return [MemoryMatch(id=str(m["id"]), score=float(m["score"]), metadata=dict(m.get("metadata") or {}))
                for m in answer["matches"]]

    async def fetch(self, ids: Sequence[str]) -> dict[str, MemoryMatch]:
        await self._ensure()
        answer = await self._c.request("POST", self._path("fetch"), json={"ids": list(ids)})
        return {str(v["id"]): MemoryMatch(id=str(v["id"]), score=1.0, metadata=dict(v.get("metadata") or {}))
                for v in answer["vectors"]}


class HttpEvents:
    """Publishes when the run succeeds, like the in-process publisher (`flush`)."""

    def __init__(self, client: IonfluxClient) -> None:
        self._c = client
        self.pending: list[tuple[str, dict[str, Any], str | None]] = []

    def publish(self, type: str, data: dict[str, Any], *, subject: str | None = None) -> None:
        self.pending.append((type, data, subject))

    async def flush(self) -> None:
        while self.pending:
            topic, data, subject = self.pending.pop(0)
            await self._c.events.publish(topic, data, subject=subject)


class HttpState:
    """The configuration's state; writes are kept until `flush` (after the run succeeded)."""

    def __init__(self, client: IonfluxClient, configuration_id: str) -> None:
        self._c = client
        self._cfg = configuration_id
        self._pending: dict[str, dict[str, Any] | None] = {}

    async def get(self, key: str) -> dict[str, Any] | None:
        if key in self._pending:
            return self._pending[key]
        return dict(await self.items(key)).get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._pending[key] = dict(value)

    def delete(self, key: str) -> None:
        self._pending[key] = None

    async def items(self, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        merged = dict(await self._c.agents.state(self._cfg, prefix))
        for key, value in self._pending.items():
            if key.startswith(prefix):
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        return sorted(merged.items())

    async def flush(self) -> None:
        for key, value in list(self._pending.items()):
            if value is None:
                await self._c.agents.delete_state(self._cfg, key)
            else:
                await self._c.agents.put_state(self._cfg, key, value)
            del self._pending[key]
