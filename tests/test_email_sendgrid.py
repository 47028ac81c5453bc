"""SendGrid: sends through the strict simulator, signed Event Webhook batches back through the pipeline,
status mapping, dedupe by sg_event_id, forged deliveries refused, the workspace's own key, the official SDK."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import sendgrid
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from ionflux.core.http import Timeouts
from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.platform import Platform
from ionflux.email.providers.sendgrid import SendGridProvider
from ionflux.email.providers.smtp import SmtpProvider
from ionflux.email.settings import EmailSettings, SendGridSettings, SmtpSettings
from ionflux.sandbox.faults import Fault
from ionflux.sandbox.sendgrid import SendGridSimulator
from ionflux.sandbox.server import SimulatorServer
from ionflux.sandbox.smtp_sink import SmtpSink
from ionflux.sandbox.webhook_sender import WebhookSender
from tests.conftest import WorkspaceHandle
from tests.email_support import SENDER, EmailEnv, email_env
from tests.polling import until

PLATFORM_KEY = "SG.platform-key-0123456789"


@asynccontextmanager
async def sendgrid_env(platform: Platform, workspace: WorkspaceHandle, *, fallback: str | None = None,
                       **sim_options: Any) -> AsyncIterator[tuple[EmailEnv, SendGridSimulator, SimulatorServer]]:
    sim = SendGridSimulator(api_keys={PLATFORM_KEY, "SG.workspace-own-key"}, **sim_options)
    async with SimulatorServer(sim.app(), name="sendgrid") as server:
        await platform.vault.put(PLATFORM_WORKSPACE, "sendgrid", {"api_key": PLATFORM_KEY,
                                                                 "webhook_public_key": sim.public_key})

        def providers(sink: SmtpSink) -> dict[str, Any]:
            return {"sendgrid": SendGridProvider(SendGridSettings(base_url=server.base_url)),
                    "smtp": SmtpProvider(SmtpSettings(host=sink.host, port=sink.port))}

        settings = EmailSettings(provider="sendgrid", fallback_provider=fallback, worker_poll_seconds=0.05)  # type: ignore[arg-type]
        async with email_env(platform, workspace.id, workspace.token, settings=settings, providers=providers) as env:
            sim.webhook_url = "http://ionflux.test/webhooks/sendgrid"
            sim.sender = WebhookSender(env.client, max_attempts=3, backoff_base=0.01)
            yield env, sim, server
            await sim.drain()


async def _status(env: EmailEnv, message_id: str, wanted: str) -> dict[str, Any]:
    async def reached() -> bool:
        return (await env.message(message_id))["status"] == wanted
    await until(reached)
    return await env.message(message_id)


async def test_single_send_then_events_move_the_status(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, duplicate_rate=1.0) as (env, sim, _server):
        sent = await env.send(to=["click.ana@example.com"], subject="Hi", text="t", html="<p>h</p>", tags=["t1"])
        assert sent["status"] == "sent" and sent["provider"] == "sendgrid"
        [mail] = sim.mails
        assert mail.api_key == PLATFORM_KEY and mail.custom_args["ionflux_message_id"] == sent["message_id"]
        assert mail.categories == ["t1"]
        view = await _status(env, sent["message_id"], "clicked")
        assert [h["status"] for h in view["history"]] == ["queued", "sent", "delivered", "opened", "clicked"]
        assert view["provider_message_id"] == mail.x_message_id
        await sim.drain()
        # Every event was delivered twice (duplicate_rate=1): each still counted once.
        assert sim.events_sent == 8 and len((await env.message(sent["message_id"]))["history"]) == 5
        types = [e.type.rsplit(".", 1)[1] for e in await env.events()]
        assert types == ["queued", "sent", "delivered", "opened", "clicked"]


async def test_templated_batch_uses_one_request_per_thousand(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, events=False) as (env, sim, server):
        await env.client.put("/v1/email/templates/promo", headers=env.headers, json={
            "subject": "{{ name }}, 20% off", "html": "<p>Hi {{ name }}, code {{ code }}</p>", "text": "Hi {{ name }}"})
        recipients = [{"to": f"r{i}@example.com", "template_data": {"name": f"<N{i}>", "code": f"C{i}"}}
                      for i in range(2100)]
        response = await env.client.post("/v1/email/batch", headers=env.headers, json={
            "from": SENDER, "template_id": "promo", "recipients": recipients})
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 2100
        assert {r["status"] for r in response.json()["results"]} == {"sent"}
        assert sim.requests_accepted == 3 and len(server.requests) == 3
        by_to = {m.to[0]: m for m in sim.mails}
        assert by_to["r7@example.com"].content["text/html"] == "<p>Hi &lt;N7&gt;, code C7</p>"
        assert by_to["r7@example.com"].subject == "<N7>, 20% off"
        assert by_to["r2099@example.com"].content["text/plain"] == "Hi <N2099>"


async def test_bounce_and_spamreport_suppress(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, duplicate_rate=0.0) as (env, sim, _server):
        bounced = await env.send(to=["bounce.x@example.com"], subject="s", text="t")
        spam = await env.send(to=["spam.y@example.com"], subject="s", text="t")
        await _status(env, bounced["message_id"], "bounced")
        await _status(env, spam["message_id"], "complained")
        listed = (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()["suppressions"]
        assert {(s["email"], s["reason"]) for s in listed} == {("bounce.x@example.com", "bounce"),
                                                              ("spam.y@example.com", "complaint")}
        again = await env.send(to=["bounce.x@example.com"], subject="s", text="t")
        assert again["status"] == "dropped" and len(sim.mails) == 2


async def test_forged_and_replayed_deliveries_are_refused(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, events=False) as (env, sim, _server):
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        event = {"email": "a@example.com", "event": "spamreport", "sg_event_id": "forged-1",
                 "timestamp": int(time.time()),
                 "ionflux_message_id": sent["message_id"], "ionflux_workspace": workspace.id}
        body = json.dumps([event]).encode()
        stamp = str(int(time.time()))
        forger = ec.generate_private_key(ec.SECP256R1())
        signature = base64.b64encode(forger.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        url = "/webhooks/sendgrid"
        forged = await env.client.post(url, content=body, headers={
            "X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": stamp})
        assert forged.status_code == 401
        genuine = base64.b64encode(sim.signing_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
        tampered = await env.client.post(url, content=body.replace(b"spamreport", b"delivered"), headers={
            "X-Twilio-Email-Event-Webhook-Signature": genuine, "X-Twilio-Email-Event-Webhook-Timestamp": stamp})
        assert tampered.status_code == 401
        assert (await env.message(sent["message_id"]))["status"] == "sent"
        assert (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()["total"] == 0


async def test_duplicate_events_count_once(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, events=False) as (env, sim, _server):
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        base = {"email": "a@example.com", "timestamp": int(time.time()), "ionflux_message_id": sent["message_id"],
                "ionflux_workspace": workspace.id, "sg_message_id": "x.filter"}
        opened = {**base, "event": "open", "sg_event_id": "ev-open-1"}
        assert await sim.post_events([opened, opened]) == 200      # twice in one batch
        assert await sim.post_events([opened, {**base, "event": "delivered", "sg_event_id": "ev-del-1"}]) == 200
        view = await _status(env, sent["message_id"], "opened")

        async def settled() -> bool:
            return len((await env.message(sent["message_id"]))["history"]) >= 4
        await until(settled)
        view = await env.message(sent["message_id"])
        assert [h["status"] for h in view["history"]] == ["queued", "sent", "opened", "delivered"]
        assert view["status"] == "opened"  # a late `delivered` does not hide the open


async def test_workspace_own_key_is_used(platform: Platform, workspace: WorkspaceHandle,
                                         other_workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, events=False) as (env, sim, _server):
        put = await env.client.put("/v1/credentials/sendgrid", headers=env.headers,
                                   json={"secrets": {"api_key": "SG.workspace-own-key"}})
        assert put.status_code in (200, 201), put.text
        await env.send(to=["a@example.com"], subject="s", text="t")
        other = {"Authorization": f"Bearer {other_workspace.token}"}
        await env.send(auth=other, to=["b@example.com"], subject="s", text="t")
        assert [(m.to[0], m.api_key) for m in sim.mails] == [("a@example.com", "SG.workspace-own-key"),
                                                             ("b@example.com", PLATFORM_KEY)]


async def test_simulator_speaks_what_the_official_sdk_expects(platform: Platform,
                                                              workspace: WorkspaceHandle) -> None:
    sim = SendGridSimulator(api_keys={PLATFORM_KEY}, events=False)
    async with SimulatorServer(sim.app(), name="sendgrid") as server:
        client = sendgrid.SendGridAPIClient(api_key=PLATFORM_KEY, host=server.base_url)
        mail = sendgrid.Mail(from_email=SENDER, to_emails="a@example.com", subject="s", plain_text_content="t")
        response = await _in_thread(lambda: client.send(mail))
        assert response.status_code == 202 and response.headers["X-Message-Id"]
        async with httpx.AsyncClient() as raw:
            bad = await raw.post(server.base_url + "/v3/mail/send", headers={"Authorization": f"Bearer {PLATFORM_KEY}"},
                                 json={"personalizations": [{"to": [{"email": f"r{i}@example.com"}]}
                                                            for i in range(1001)],
                                       "from": {"email": SENDER}, "subject": "s",
                                       "content": [{"type": "text/plain", "value": "t"}]})
        assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "personalizations"
    # The SDK's own verifier accepts what the simulator signs.
    body = json.dumps([{"event": "processed", "sg_event_id": "e1", "email": "a@example.com"}])
    stamp = str(int(time.time()))
    signature = base64.b64encode(sim.signing_key.sign((stamp + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    verifier = EventWebhook()
    assert verifier.verify_signature(body, signature, stamp, verifier.convert_public_key_to_ecdsa(sim.public_key))


async def _in_thread(call: Any) -> Any:
    return await asyncio.to_thread(call)


async def test_failover_to_smtp_without_double_send(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with sendgrid_env(platform, workspace, fallback="smtp", events=False) as (env, sim, server):
        server.faults.push(Fault.respond(503, times=None, path="/v3/mail/send"))
        body: dict[str, Any] = {"to": ["a@example.com"], "subject": "s", "text": "t", "idempotency_key": "k-1"}
        sent = await env.send(**body)
        assert sent["status"] == "sent" and sent["provider"] == "smtp"
        assert len(server.requests) == 3 and not sim.mails  # the retry budget, all refused with 503
        assert [m.rcpt_tos for m in env.sink.messages] == [["a@example.com"]]
        assert (await env.send(**body))["idempotent_replay"] is True
        assert await env.plugin.worker.run_once() == 0  # nothing left for the worker either
        assert len(env.sink.messages) == 1 and len(server.requests) == 3
        # A timeout after the request went out is ambiguous: never re-sent anywhere.
        server.faults.clear()
        server.faults.push(Fault(kind="timeout", seconds=5.0, path="/v3/mail/send"))
        client = env.plugin.providers["sendgrid"].client  # type: ignore[attr-defined]
        client.profile = replace(client.profile, timeouts=Timeouts(read=0.5, total=1.0))
        unsure = await env.send(to=["b@example.com"], subject="s", text="t")
        assert unsure["status"] == "failed" and len(env.sink.messages) == 1
