"""A strict SendGrid v3 Mail Send simulator that then reports what "happened" through a signed Event Webhook.

    sim = SendGridSimulator(api_keys={"SG.test"}, webhook_url="http://…/webhooks/sendgrid/<connection>")
    async with SimulatorServer(sim.app()) as server: …    # or start_sendgrid(...) on a thread

`POST /v3/mail/send` checks the Bearer key and the documented rules (API_FACTS §3: 1,000 personalizations and
1,000 recipients per request, an address once per request, from/subject/content required, send_at at most
72 h ahead, custom_args under 10,000 bytes, categories, reserved headers) and answers 400 with
`{"errors": [{"message", "field", "help"}]}`, 401 for a bad key, or 202 with an empty body and `X-Message-Id`.
Accepted mail is kept in `mails` with its substitutions applied. Each recipient then gets events —
processed, delivered, and by the address's local part: `bounce…` bounce, `spam…` spamreport, `open…` open,
`click…` open + click — posted in JSON-array batches signed with ECDSA P-256 as SendGrid signs them
(`sandbox.webhook_sender`), with about `duplicate_rate` of events sent a second time in a later batch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ionflux.sandbox.server import SimulatorServer
from ionflux.sandbox.webhook_sender import WebhookSender, sendgrid_signer

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."
RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding", "to",
            "from", "subject", "reply-to", "cc", "bcc"}


def _error(message: str, field: str | None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP + (field or "")}


def _valid_email(value: Any) -> bool:
    return isinstance(value, str) and value.count("@") == 1 and "." in value.split("@")[1] and " " not in value


def validate(body: Any, now: float) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return [_error("Bad Request", None)]
    errors: list[dict[str, Any]] = []
    people = body.get("personalizations")
    if not isinstance(people, list) or not people:
        errors.append(_error("The personalizations field is required and must have at least one personalization.",
                             "personalizations"))
        people = []
    if len(people) > 1000:
        errors.append(_error("The personalization block is limited to 1000 personalizations per API request. You "
                             f"have provided {len(people)} personalizations. Please consider splitting this into "
                             "multiple requests and resending your request.", "personalizations"))
    total, seen = 0, set()
    for i, p in enumerate(people):
        if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
            errors.append(_error("The to array is required for all personalization objects, and must have at least "
                                 "one email object with a valid email address.", f"personalizations.{i}.to"))
            continue
        for kind in ("to", "cc", "bcc"):
            for j, r in enumerate(p.get(kind) or []):
                email = r.get("email") if isinstance(r, dict) else None
                if not _valid_email(email):
                    errors.append(_error("Does not contain a valid address.", f"personalizations.{i}.{kind}.{j}.email"))
                    continue
                total += 1
                if str(email).lower() in seen:
                    errors.append(_error("Each email address in the personalization block should be unique between "
                                         "to, cc, and bcc. We found the first duplicate instance of "
                                         f"[{email}] in the personalizations.{i}.{kind} field.",
                                         f"personalizations.{i}.{kind}"))
                seen.add(str(email).lower())
        if len(json.dumps(p.get("custom_args") or {}).encode()) > 10000:
            errors.append(_error("The custom_args must be less than 10000 bytes.", f"personalizations.{i}.custom_args"))
        if len(json.dumps(p.get("substitutions") or {}).encode()) > 10000:
            errors.append(_error("The substitutions must be less than 10000 bytes.",
                                 f"personalizations.{i}.substitutions"))
        for name in (p.get("headers") or {}):
            if str(name).lower() in RESERVED:
                errors.append(_error(f"The header {name} is reserved.", f"personalizations.{i}.headers"))
        send_at = p.get("send_at")
        if send_at is not None and (not isinstance(send_at, int) or send_at > now + 72 * 3600):
            errors.append(_error("send_at must be a unix timestamp at most 72 hours in the future.",
                                 f"personalizations.{i}.send_at"))
        if not body.get("template_id") and not (p.get("subject") or body.get("subject")):
            errors.append(_error("The subject is required. You can get around this requirement if you use a template "
                                 "with a subject defined or if every personalization has a subject defined.",
                                 "subject"))
    if total > 1000:
        errors.append(_error("There is a limit of 1000 total recipients (to + cc + bcc) per request.",
                             "personalizations"))
    sender = body.get("from")
    if not isinstance(sender, dict) or not _valid_email(sender.get("email")):
        errors.append(_error("The from object must be provided for every email send. It is an object that requires "
                             "the email parameter, but may also contain a name parameter.", "from.email"))
    content = body.get("content")
    if not body.get("template_id"):
        if not isinstance(content, list) or not content:
            errors.append(_error("Unless a valid template_id is provided, the content parameter is required. There "
                                 "must be at least one defined content block.", "content"))
        else:
            for k, c in enumerate(content):
                if not isinstance(c, dict) or not isinstance(c.get("value"), str) or not c["value"]:
                    errors.append(_error("The content value must be a string at least one character in length.",
                                         f"content.{k}.value"))
            types = [c.get("type") for c in content if isinstance(c, dict)]
            if "text/plain" in types and types[0] != "text/plain":
                errors.append(_error("The text/plain content type must be first.", "content"))
    categories = body.get("categories") or []
    if len(categories) > 10 or any(not isinstance(c, str) or len(c) > 255 for c in categories):
        errors.append(_error("The categories can have at most 10 items, each at most 255 characters.", "categories"))
    return errors


@dataclass
class SentMail:
    x_message_id: str
    sg_message_id: str
    api_key: str
    sender: str
    to: list[str]
    subject: str
    content: dict[str, str]
    custom_args: dict[str, Any]
    categories: list[str]
    headers: dict[str, str] = field(default_factory=dict)


class SendGridSimulator:
    def __init__(self, *, api_keys: set[str] | None = None, webhook_url: str | None = None,
                 signing_key: ec.EllipticCurvePrivateKey | None = None, duplicate_rate: float = 0.05,
                 batch_size: int = 500, seed: int = 7, events: bool = True) -> None:
        self.api_keys = api_keys if api_keys is not None else {"SG.sandbox-key"}
        self.webhook_url = webhook_url
        self.signing_key = signing_key or ec.generate_private_key(ec.SECP256R1())
        self.duplicate_rate = duplicate_rate
        self.batch_size = batch_size
        self.events_enabled = events
        self.rng = random.Random(seed)  # noqa: S311 - which events repeat, not cryptography
        self.mails: list[SentMail] = []
        self.requests_accepted = 0
        self.deliveries: list[int] = []  # HTTP status of each webhook POST
        self.events_sent = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.sender = WebhookSender(max_attempts=5, backoff_base=0.05, backoff_cap=1.0)

    @property
    def public_key(self) -> str:
        """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
        der = self.signing_key.public_key().public_bytes(serialization.Encoding.DER,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v3/mail/send", self._send, methods=["POST"])])

    async def _send(self, request: Request) -> Response:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or key not in self.api_keys:
            return JSONResponse({"errors": [{"field": None, "message": "The provided authorization grant is invalid, "
                                             "expired, or revoked", "help": None}]}, status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"errors": [_error("Bad Request", None)]}, status_code=400)
        errors = validate(body, time.time())
        if errors:
            return JSONResponse({"errors": errors}, status_code=400)
        x_message_id = secrets.token_urlsafe(16)[:22]
        accepted = self._accept(body, x_message_id, key)
        self.requests_accepted += 1
        if self.events_enabled and self.webhook_url:
            task = asyncio.create_task(self._report(accepted))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return Response(status_code=202, headers={"X-Message-Id": x_message_id})

    def _accept(self, body: dict[str, Any], x_message_id: str, key: str) -> list[SentMail]:
        content = {c["type"]: c["value"] for c in body.get("content") or []}
        out = []
        for p in body["personalizations"]:
            subs = p.get("substitutions") or {}
            filled = {kind: _fill(value, subs) for kind, value in content.items()}
            for kind in ("to", "cc", "bcc"):
                for r in p.get(kind) or []:
                    mail = SentMail(x_message_id, f"{x_message_id}.filter0001.{len(self.mails)}.0", key,
                                    body["from"]["email"], [r["email"]], _fill(p.get("subject") or body.get("subject")
                                                                               or "", subs),
                                    filled, dict(p.get("custom_args") or {}), list(body.get("categories") or []),
                                    dict(p.get("headers") or {}))
                    self.mails.append(mail)
                    out.append(mail)
        return out

    def _events_for(self, mail: SentMail) -> list[dict[str, Any]]:
        now = int(time.time())
        email = mail.to[0]
        local = email.split("@")[0].lower()
        base = {"email": email, "timestamp": now, "sg_message_id": mail.sg_message_id,
                "smtp-id": f"<{mail.x_message_id}@sandbox>", "category": mail.categories, **mail.custom_args}
        kinds: list[dict[str, Any]] = [{"event": "processed"}]
        if local.startswith("bounce"):
            kinds.append({"event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 no such user"})
        else:
            kinds.append({"event": "delivered", "response": "250 OK"})
            if local.startswith("spam"):
                kinds.append({"event": "spamreport"})
            if local.startswith(("open", "click")):
                kinds.append({"event": "open", "useragent": "Mozilla/5.0", "ip": "192.0.2.1"})
            if local.startswith("click"):
                kinds.append({"event": "click", "url": "https://shop.example.com/", "ip": "192.0.2.1"})
        return [{**base, **k, "sg_event_id": uuid.uuid4().hex} for k in kinds]

    async def _report(self, mails: list[SentMail]) -> None:
        events = [e for m in mails for e in self._events_for(m)]
        duplicates = [e for e in events if self.rng.random() < self.duplicate_rate]
        batches = [events[i:i + self.batch_size] for i in range(0, len(events), self.batch_size)]
        if duplicates:
            batches.append(duplicates)  # a redelivered event arrives again, later, with the same sg_event_id
        for batch in batches:
            await self.post_events(batch)

    async def post_events(self, events: list[dict[str, Any]]) -> int | None:
        """Sign and POST one Event Webhook batch (also used by tests to send hand-made events)."""
        assert self.webhook_url is not None
        body = json.dumps(events, separators=(",", ":")).encode()
        result = await self.sender.send(self.webhook_url, body, sendgrid_signer(self.signing_key))
        self.deliveries.append(result.status or 0)
        self.events_sent += len(events)
        return result.status

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _fill(text: str, substitutions: dict[str, str]) -> str:
    for tag, value in substitutions.items():
        text = text.replace(tag, str(value))
    return text


def start_sendgrid(simulator: SendGridSimulator | None = None, **options: Any) -> tuple[SendGridSimulator,
                                                                                       SimulatorServer]:
    """Run a simulator on a background thread (the demo, `ionflux sandbox`); stop with `server.stop()`."""
    sim = simulator or SendGridSimulator(**options)
    return sim, SimulatorServer(sim.app(), name="sendgrid").start()
