"""WhatsApp webhooks end to end: handshake, X-Hub-Signature-256, routing by phone_number_id, inbound messages
and statuses published once however often Meta delivers them, and template status updates."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from sqlalchemy import select

from ionflux.messaging.models import WaTemplate
from tests import whatsapp_fixtures
from tests.whatsapp_fixtures import (
    APP_SECRET,
    DISPLAY,
    PHONE_ID,
    RECEIVED,
    STATUS,
    USER,
    VERIFY_TOKEN,
    WABA_ID,
    WaEnv,
)

wa_env = whatsapp_fixtures.wa_env  # the shared fixture, used by name

TEMPLATE_STATUS = "platform.whatsapp.events.templates.status"


def inbound_doc(wamids: list[str], wa_id: str = USER) -> dict[str, object]:
    messages = [{"from": wa_id, "id": w, "timestamp": str(int(time.time())), "type": "text", "text": {"body": w}}
                for w in wamids]
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": DISPLAY, "phone_number_id": PHONE_ID},
             "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}], "messages": messages}
    return {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"field": "messages", "value": value}]}]}


async def test_handshake_answers_the_challenge_only_to_the_right_token(wa_env: WaEnv) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    ok = await wa_env.client.get("/webhooks/whatsapp", params=query)
    assert ok.status_code == 200 and ok.text == "1158201444"
    wrong = await wa_env.client.get("/webhooks/whatsapp", params={**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403


async def test_a_forged_signature_is_refused_with_401_and_nothing_is_published(wa_env: WaEnv) -> None:
    body = json.dumps(inbound_doc(["wamid.FORGED"])).encode()
    forged = "sha256=" + hmac.new(b"not-the-app-secret", body, hashlib.sha256).hexdigest()
    response = await wa_env.client.post("/webhooks/whatsapp", content=body,
                                        headers={"X-Hub-Signature-256": forged, "Content-Type": "application/json"})
    assert response.status_code == 401
    good = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = await wa_env.client.post("/webhooks/whatsapp", content=body,
                                        headers={"X-Hub-Signature-256": good, "Content-Type": "application/json"})
    assert response.status_code == 200
    events = await wa_env.wait_events(RECEIVED, 1)
    assert [e.data["wamid"] for e in events] == ["wamid.FORGED"]  # published once, from the signed copy only


async def test_duplicate_messages_and_statuses_are_published_once(wa_env: WaEnv) -> None:
    first = await wa_env.sim.phone.send_text(PHONE_ID, USER, "hello", copies=3)  # the same delivery, 3 times
    # Meta may also resend a message inside another delivery (other bytes): deduped by its wamid.
    await wa_env.sim.deliver(inbound_doc([first["id"], "wamid.NEW"]))
    events = await wa_env.wait_events(RECEIVED, 2)
    await wa_env.inbound("marker")  # everything delivered before it has been handled
    assert [e.data["wamid"] for e in wa_env.of(RECEIVED)] == [first["id"], "wamid.NEW", wa_env.of(RECEIVED)[-1].data[
        "wamid"]]
    assert events[0].data["from"] == USER and events[0].data["text"] == "hello"
    assert events[0].data["profile_name"] == "Test User" and events[0].data["user_id"].startswith("US.")
    assert events[0].workspace_id == wa_env.workspace_id  # found by phone_number_id

    message = (await wa_env.send(to=USER, type="text", text={"body": "hi"})).json()
    await wa_env.sim.phone.report(message["wamid"], ["delivered"], copies=2)
    await wa_env.sim.phone.report(message["wamid"], ["sent", "delivered"])
    statuses = await wa_env.wait_events(STATUS, 2)
    await wa_env.sim.phone.report(message["wamid"], ["read"])
    await wa_env.wait_events(STATUS, 3)
    assert [e.data["status"] for e in wa_env.of(STATUS)] == ["delivered", "sent", "read"]
    assert statuses[1].data["current_status"] == "delivered"  # a late 'sent' does not move it back


async def test_interactive_replies_and_media_references_are_published(wa_env: WaEnv) -> None:
    await wa_env.sim.phone.tap_button(PHONE_ID, USER, "yes", "Yes please", context_id="wamid.PROMPT")
    await wa_env.sim.phone.send(PHONE_ID, USER, {"type": "image", "image": {
        "id": "1479537139650973", "mime_type": "image/jpeg", "sha256": "abc", "caption": "my receipt"}})
    tap, image = await wa_env.wait_events(RECEIVED, 2)
    assert tap.data["type"] == "interactive" and tap.data["interactive"]["button_reply"]["id"] == "yes"
    assert tap.data["context"]["id"] == "wamid.PROMPT" and tap.data["text"] == "Yes please"
    assert image.data["media"]["image"]["id"] == "1479537139650973" and image.data["text"] is None


async def test_templates_are_proxied_cached_and_updated_by_status_webhooks(wa_env: WaEnv) -> None:
    bad = await wa_env.client.post("/v1/whatsapp/templates", headers=wa_env.headers, json={
        "name": "Spring Sale!", "language": "en_US", "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Hi"}]})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "name"
    no_body = await wa_env.client.post("/v1/whatsapp/templates", headers=wa_env.headers, json={
        "name": "spring_sale", "language": "en_US", "category": "MARKETING", "components": []})
    assert no_body.status_code == 400 and no_body.json()["error"]["field"] == "components"
    wrong_category = await wa_env.client.post("/v1/whatsapp/templates", headers=wa_env.headers, json={
        "name": "spring_sale", "language": "en_US", "category": "PROMO",
        "components": [{"type": "BODY", "text": "Hi"}]})
    assert wrong_category.status_code == 400 and wrong_category.json()["error"]["field"] == "category"
    assert not [r for r in wa_env.server.requests if "message_templates" in r.path]

    created = await wa_env.client.post("/v1/whatsapp/templates", headers=wa_env.headers, json={
        "name": "spring_sale", "language": "en_US", "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Hi {{1}}, 20% off today"}]})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "PENDING"
    await wa_env.opt_in()
    pending = await wa_env.send(to=USER, type="template", template={
        "name": "spring_sale", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]})
    assert pending.status_code == 400 and pending.json()["error"]["details"]["meta_code"] == 132001

    await wa_env.sim.set_template_status(WABA_ID, "spring_sale", "APPROVED")
    events = await wa_env.wait_events(TEMPLATE_STATUS, 1)
    assert events[0].data["status"] == "APPROVED" and events[0].data["name"] == "spring_sale"
    async with wa_env.platform.db.tenant(wa_env.workspace_id) as session:
        cached = await session.scalar(select(WaTemplate).where(WaTemplate.name == "spring_sale"))
        assert cached is not None and cached.status == "APPROVED"

    listed = (await wa_env.client.get("/v1/whatsapp/templates", headers=wa_env.headers)).json()
    assert {(t["name"], t["status"]) for t in listed["data"]} == {("order_update", "APPROVED"),
                                                                 ("spring_sale", "APPROVED")}
    assert (await wa_env.client.delete("/v1/whatsapp/templates/spring_sale", headers=wa_env.headers)).status_code == 204
    listed = (await wa_env.client.get("/v1/whatsapp/templates", headers=wa_env.headers)).json()
    assert [t["name"] for t in listed["data"]] == ["order_update"]


async def test_each_workspace_gets_only_its_own_numbers_traffic(wa_env: WaEnv) -> None:
    other = await wa_env.platform.workspaces.create("globex")
    other_headers = {"Authorization": f"Bearer {other.token}"}
    wa_env.sim.add_number("106540352249999", waba_id="555000111", display_phone_number="15550009999")
    added = await wa_env.client.post("/v1/whatsapp/numbers", headers=other_headers, json={
        "phone_number_id": "106540352249999", "waba_id": "555000111", "display_phone_number": "15550009999"})
    assert added.status_code == 201, added.text
    await wa_env.sim.phone.send_text("106540352249999", USER, "for globex")
    await wa_env.sim.phone.send_text(PHONE_ID, USER, "for acme")
    events = await wa_env.wait_events(RECEIVED, 2)
    assert {(e.workspace_id, e.data["text"]) for e in events} == {(other.id, "for globex"),
                                                                 (wa_env.workspace_id, "for acme")}
    # The user wrote to globex's number only: acme's window with them is its own (opened by "for acme").
    reply = await wa_env.client.post("/v1/whatsapp/messages", headers=other_headers,
                                     json={"to": USER, "type": "text", "text": {"body": "hi from globex"}})
    assert reply.status_code == 201, reply.text
    consent = await wa_env.client.get(f"/v1/whatsapp/contacts/{USER}/consent", headers=other_headers)
    assert consent.json()["status"] == "unknown"
