"""A WhatsApp Cloud API simulator: Graph's `/{version}/{phone_number_id}/messages` and
`/{version}/{waba_id}/message_templates`, with Meta's validation rules (whatsapp_rules.py), the 24-hour
window (131047), per-number throughput (130429 when exceeded, inbound counted too), optional pair rate
(131056), bearer tokens per number (190), and a `phone` that writes to the business and answers with
sent / delivered / read statuses, delivered as signed webhooks (X-Hub-Signature-256) with retries.

    sim = WhatsAppSimulator(app_secret="...", webhook_url="http://…/webhooks/whatsapp")
    sim.add_number("1065…", waba_id="2001…", display_phone_number="15550001111", tokens={"EAAG…"})
    async with SimulatorServer(sim.app) as server: ...      # point IONFLUX_WHATSAPP_BASE_URL at server.base_url
    await sim.phone.send_text("1065…", "4479…", "hi")       # an inbound message, signed and delivered
    await sim.settle()                                      # wait for pending webhook deliveries
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ionflux.sandbox import whatsapp_rules as rules
from ionflux.sandbox.webhook_sender import DeliveryResult, WebhookSender, meta_signer

WINDOW_SECONDS = 24 * 3600


@dataclass
class SimNumber:
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    tokens: set[str]
    messages_per_second: float


@dataclass
class _Bucket:
    capacity: float
    rate: float
    level: float = 0.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        self.level = max(0.0, self.level - (now - self.at) * self.rate)
        self.at = now
        if self.level + 1 > self.capacity:
            return False
        self.level += 1
        return True


@dataclass
class SentMessage:
    wamid: str
    phone_number_id: str
    to: str
    body: dict[str, Any]
    token: str
    at: float


@dataclass
class Stats:
    sent: int = 0
    throttled: int = 0  # 130429 answers
    pair_limited: int = 0  # 131056 answers
    refused: int = 0  # any other error answer
    webhooks: list[DeliveryResult] = field(default_factory=list)


class WhatsAppSimulator:
    def __init__(self, *, app_secret: str, webhook_url: str | None = None, system_tokens: set[str] | None = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 auto_statuses: tuple[str, ...] = ("sent", "delivered", "read"),
                 pair_rate: tuple[float, float] | None = None, webhook_client: httpx.AsyncClient | None = None,
                 sender: WebhookSender | None = None) -> None:
        self.app_secret = app_secret
        self.webhook_url = webhook_url
        self.system_tokens = set(system_tokens or ())
        self.clock, self.monotonic = clock, monotonic  # wall clock (timestamps, window), pacing clock
        self.auto_statuses = auto_statuses  # statuses the phone reports for each accepted message, in this order
        self.early_statuses: tuple[str, ...] = ()  # reported before the send's answer (webhooks racing it)
        self.pair_rate = pair_rate  # (burst, seconds per message) to one user; None: not enforced
        self.numbers: dict[str, SimNumber] = {}
        self.templates: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}  # waba -> (name, language) -> t
        self.windows: dict[tuple[str, str], float] = {}  # (number, user) -> last inbound (wall clock)
        self.sent: dict[str, SentMessage] = {}
        self.stats = Stats()
        self.sender = sender or WebhookSender(webhook_client, max_attempts=5, backoff_base=0.05, backoff_cap=1.0)
        self.phone = Phone(self)
        self._throughput: dict[str, _Bucket] = {}
        self._pairs: dict[tuple[str, str], _Bucket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(routes=[
            Route("/{version}/{node}/messages", self._messages, methods=["POST"]),
            Route("/{version}/{node}/message_templates", self._templates, methods=["GET", "POST", "DELETE"]),
            Route("/_whatsapp/stats", self._stats, methods=["GET"]),
        ])

    # -- set-up --------------------------------------------------------------------------------------
    def add_number(self, phone_number_id: str, *, waba_id: str, display_phone_number: str,
                   tokens: set[str] | None = None, messages_per_second: float = 80.0) -> SimNumber:
        number = SimNumber(phone_number_id, waba_id, display_phone_number, set(tokens or ()), messages_per_second)
        self.numbers[phone_number_id] = number
        self.templates.setdefault(waba_id, {})
        return number

    def add_template(self, waba_id: str, name: str, *, language: str = "en_US", category: str = "UTILITY",
                     body: str = "Hello {{1}}", status: str = "APPROVED") -> dict[str, Any]:
        template = {"id": str(uuid.uuid4().int)[:15], "name": name, "language": language, "category": category,
                    "status": status, "components": [{"type": "BODY", "text": body}]}
        self.templates.setdefault(waba_id, {})[(name, language)] = template
        return template

    async def set_template_status(self, waba_id: str, name: str, status: str, *, language: str = "en_US",
                                  reason: str | None = None) -> DeliveryResult | None:
        """Meta's review decided: change the status and send the `message_template_status_update` webhook."""
        template = self.templates[waba_id][(name, language)]
        template["status"] = status
        value = {"event": status, "message_template_id": int(template["id"]), "message_template_name": name,
                 "message_template_language": language, "reason": reason or "NONE"}
        return await self.deliver({"object": "whatsapp_business_account", "entry": [
            {"id": waba_id, "time": int(self.clock()),
             "changes": [{"field": "message_template_status_update", "value": value}]}]})

    # -- webhooks ------------------------------------------------------------------------------------
    async def deliver(self, doc: dict[str, Any], *, copies: int = 1) -> DeliveryResult | None:
        """Sign and POST a webhook body (`copies` times: Meta delivers at least once)."""
        if not self.webhook_url:
            return None
        body = json.dumps(doc, separators=(",", ":")).encode()
        result = None
        for _ in range(copies):
            result = await self.sender.send(self.webhook_url, body, meta_signer(self.app_secret))
            self.stats.webhooks.append(result)
        return result

    def later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self, within: float = 30.0) -> None:
        """Wait until every webhook the simulator scheduled has been delivered (or given up)."""
        deadline = time.monotonic() + within
        while self._tasks:
            if time.monotonic() > deadline:
                raise TimeoutError("simulator webhooks still pending")
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def count_throughput(self, phone_number_id: str) -> bool:
        number = self.numbers[phone_number_id]
        bucket = self._throughput.setdefault(
            phone_number_id, _Bucket(number.messages_per_second, number.messages_per_second, at=self.monotonic()))
        return bucket.take(self.monotonic())

    async def _stats(self, _request: Request) -> Response:
        """Simulator-only: what it answered (for the demo and the benchmark, which run it in another process)."""
        return JSONResponse({"sent": self.stats.sent, "throttled": self.stats.throttled,
                             "pair_limited": self.stats.pair_limited, "refused": self.stats.refused,
                             "webhooks": len(self.stats.webhooks)})

    # -- Graph API -----------------------------------------------------------------------------------
    def _error(self, error: rules.GraphError) -> JSONResponse:
        if error.code == rules.THROUGHPUT:
            self.stats.throttled += 1
        elif error.code == rules.PAIR_RATE:
            self.stats.pair_limited += 1
        else:
            self.stats.refused += 1
        return JSONResponse(error.body(secrets.token_urlsafe(12)), status_code=error.status,
                            headers={"WWW-Authenticate": "OAuth"} if error.status == 401 else None)

    def _authorised(self, request: Request, numbers: list[SimNumber]) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        if token in self.system_tokens or any(token in n.tokens for n in numbers):
            return token
        return None

    async def _messages(self, request: Request) -> Response:
        number = self.numbers.get(request.path_params["node"])
        if number is None:
            return self._error(rules.GraphError(400, 100, "Unsupported post request",
                                                "object does not exist or lacks permissions"))
        token = self._authorised(request, [number])
        if token is None:
            return self._error(rules.GraphError(401, rules.TOKEN_INVALID, "Invalid OAuth access token",
                                                "the access token is not valid for this phone number"))
        try:
            body = json.loads(await request.body())
        except ValueError:
            return self._error(rules.invalid("the body is not JSON", rules.INVALID_PARAMETER))
        problem = rules.check_envelope(body) or self._check_content(number, body)
        if problem:
            return self._error(problem)
        to = body["to"].lstrip("+")
        if not self.count_throughput(number.phone_number_id):
            return self._error(rules.GraphError(429, rules.THROUGHPUT, "Rate limit hit",
                                                "too many messages from this phone number"))
        if self.pair_rate is not None:
            burst, every = self.pair_rate
            pair = self._pairs.setdefault((number.phone_number_id, to), _Bucket(burst, 1 / every, at=self.monotonic()))
            if not pair.take(self.monotonic()):
                return self._error(rules.GraphError(400, rules.PAIR_RATE, "Rate limit hit",
                                                    "(Business Account, Consumer Account) pair rate limit hit"))
        wamid = "wamid." + uuid.uuid4().hex.upper()
        self.sent[wamid] = SentMessage(wamid, number.phone_number_id, to, body, token, self.clock())
        self.stats.sent += 1
        if self.webhook_url and self.early_statuses:  # delivered before the send is even answered
            await self.phone.report(wamid, self.early_statuses)
        if self.webhook_url and self.auto_statuses:
            self.later(self.phone.report(wamid, self.auto_statuses))
        answer: dict[str, Any] = {"id": wamid}
        if body.get("type") == "template":
            answer["message_status"] = "accepted"
        return JSONResponse({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": to}],
                             "messages": [answer]})

    def _check_content(self, number: SimNumber, body: dict[str, Any]) -> rules.GraphError | None:
        kind = body.get("type", "text")
        if kind == "template":
            sent = body.get("template")
            key = (sent.get("name"), (sent.get("language") or {}).get("code")) if isinstance(sent, dict) else None
            stored = self.templates.get(number.waba_id, {}).get(key) if key else None  # type: ignore[arg-type]
            return rules.check_template(sent, stored)
        problem = rules.check_text(body.get("text")) if kind == "text" else rules.check_interactive(
            body.get("interactive"))
        if problem:
            return problem
        last = self.windows.get((number.phone_number_id, body["to"].lstrip("+")))
        if last is None or self.clock() - last >= WINDOW_SECONDS:
            return rules.GraphError(400, rules.REENGAGEMENT, "Re-engagement message",
                                    "Message failed to send because more than 24 hours have passed since the "
                                    "customer last replied to this number.")
        return None

    async def _templates(self, request: Request) -> Response:
        waba_id = request.path_params["node"]
        numbers = [n for n in self.numbers.values() if n.waba_id == waba_id]
        if not numbers:
            return self._error(rules.GraphError(400, 100, "Unsupported request", "unknown business account"))
        if self._authorised(request, numbers) is None:
            return self._error(rules.GraphError(401, rules.TOKEN_INVALID, "Invalid OAuth access token",
                                                "the access token is not valid for this business account"))
        store = self.templates.setdefault(waba_id, {})
        if request.method == "GET":
            return self._list(request, list(store.values()))
        if request.method == "DELETE":
            name = request.query_params.get("name", "")
            doomed = [key for key in store if key[0] == name]
            if not doomed:
                return self._error(rules.invalid(f"template {name!r} does not exist", rules.INVALID_PARAMETER))
            for key in doomed:
                del store[key]
            return JSONResponse({"success": True})
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        problem = rules.check_new_template(body)
        if problem:
            return self._error(problem)
        if (body["name"], body["language"]) in store:
            return self._error(rules.invalid("a template with this name and language already exists",
                                             rules.INVALID_PARAMETER))
        template = {"id": str(uuid.uuid4().int)[:15], "name": body["name"], "language": body["language"],
                    "category": body["category"], "status": "PENDING", "components": body["components"]}
        store[(body["name"], body["language"])] = template
        return JSONResponse({"id": template["id"], "status": "PENDING", "category": body["category"]})

    def _list(self, request: Request, templates: list[dict[str, Any]]) -> Response:
        limit = max(1, min(int(request.query_params.get("limit", "25") or 25), 100))
        start = int(request.query_params.get("after", "0") or 0)
        page = templates[start:start + limit]
        paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + len(page))}}
        if start + limit < len(templates):
            paging["next"] = str(request.url.include_query_params(after=str(start + limit)))
        return JSONResponse({"data": page, "paging": paging})


def contact(wa_id: str, name: str | None = None) -> dict[str, Any]:
    """A webhook `contacts[]` entry. `user_id` is the business-scoped user id of 2026 payloads (not in API_FACTS;
    pywa 4.5 requires it): stable per user here, "<country>.<digits>"."""
    digits = str(int(hashlib.sha256(wa_id.encode()).hexdigest()[:15], 16))
    entry: dict[str, Any] = {"wa_id": wa_id, "user_id": f"US.{digits}"}
    if name is not None:
        entry["profile"] = {"name": name}
    return entry


class Phone:
    """The users' side: inbound messages (opening the window) and the statuses of messages they receive."""

    def __init__(self, sim: WhatsAppSimulator) -> None:
        self.sim = sim

    def _envelope(self, number: SimNumber, value: dict[str, Any]) -> dict[str, Any]:
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": number.display_phone_number,
                              "phone_number_id": number.phone_number_id}, **value}
        return {"object": "whatsapp_business_account", "entry": [
            {"id": number.waba_id, "changes": [{"field": "messages", "value": value}]}]}

    async def send(self, phone_number_id: str, wa_id: str, message: dict[str, Any], *, name: str = "Test User",
                   copies: int = 1) -> dict[str, Any]:
        """Deliver one inbound message (`message` holds type and its object); returns it with id and timestamp."""
        number = self.sim.numbers[phone_number_id]
        now = self.sim.clock()
        self.sim.count_throughput(phone_number_id)  # Meta counts inbound and outbound alike
        self.sim.windows[(phone_number_id, wa_id)] = now
        full = {"from": wa_id, "id": "wamid." + uuid.uuid4().hex.upper(), "timestamp": str(int(now)), **message}
        doc = self._envelope(number, {"contacts": [contact(wa_id, name)], "messages": [full]})
        await self.sim.deliver(doc, copies=copies)
        return full

    async def send_text(self, phone_number_id: str, wa_id: str, text: str, **kw: Any) -> dict[str, Any]:
        return await self.send(phone_number_id, wa_id, {"type": "text", "text": {"body": text}}, **kw)

    async def tap_button(self, phone_number_id: str, wa_id: str, button_id: str, title: str,
                         context_id: str | None = None, **kw: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "interactive",
                                   "interactive": {"type": "button_reply",
                                                   "button_reply": {"id": button_id, "title": title}}}
        if context_id:
            message["context"] = {"from": self.sim.numbers[phone_number_id].display_phone_number, "id": context_id}
        return await self.send(phone_number_id, wa_id, message, **kw)

    async def report(self, wamid: str, statuses: tuple[str, ...] | list[str], *, copies: int = 1,
                     errors: list[dict[str, Any]] | None = None) -> None:
        """Send the statuses of an outbound message, one delivery each, in the order given."""
        sent = self.sim.sent[wamid]
        number = self.sim.numbers[sent.phone_number_id]
        for status in statuses:
            item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(int(self.sim.clock())),
                                    "recipient_id": sent.to}
            if status == "failed":
                item["errors"] = errors or [{"code": 131026, "title": "Message undeliverable",
                                             "message": "Message undeliverable",
                                             "error_data": {"details": "the recipient cannot receive it"}}]
            elif status == "sent":
                item["conversation"] = {"id": uuid.uuid4().hex, "origin": {"type": "service"}}
                item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
            # The user the status is about rides along in `contacts`, as in recent payloads (pywa 4.5 reads it).
            value = {"contacts": [contact(sent.to)], "statuses": [item]}
            await self.sim.deliver(self._envelope(number, value), copies=copies)


DEMO_PHONE_ID, DEMO_WABA_ID = "106540352242922", "102290129340398"


def demo_app() -> Any:
    """For `ionflux sandbox`: one number on one WABA with an approved `order_update` template; it accepts the
    platform token and signs webhooks with the app secret from IONFLUX_WHATSAPP_* (demo values otherwise), and
    delivers them to IONFLUX_SANDBOX_WHATSAPP_WEBHOOK_URL (default: a local `ionflux serve`)."""
    import os

    sim = WhatsAppSimulator(
        app_secret=os.environ.get("IONFLUX_WHATSAPP_APP_SECRET", "ionflux-demo-app-secret"),
        webhook_url=os.environ.get("IONFLUX_SANDBOX_WHATSAPP_WEBHOOK_URL", "http://127.0.0.1:8080/webhooks/whatsapp"),
        system_tokens={os.environ.get("IONFLUX_WHATSAPP_ACCESS_TOKEN", "ionflux-demo-system-user-token")})
    sim.add_number(DEMO_PHONE_ID, waba_id=DEMO_WABA_ID, display_phone_number="15550001111")
    sim.add_template(DEMO_WABA_ID, "order_update", body="Hi {{1}}, your order costs {{2}}")
    return sim.app
