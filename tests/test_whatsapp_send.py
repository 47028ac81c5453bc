"""Sending through the API against the Graph simulator: rules before Meta, Meta's answers mapped, the token
used, and each message's status as the phone reports it (in order or not)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from ionflux.messaging.models import WaMessage
from tests import whatsapp_fixtures
from tests.whatsapp_fixtures import (
    NUMBER_TOKEN,
    PHONE_ID,
    PLATFORM_TOKEN,
    STATUS,
    USER,
    WaEnv,
)

wa_env = whatsapp_fixtures.wa_env  # the shared fixture, used by name

ORDER_TEMPLATE = {"name": "order_update", "language": {"code": "en_US"}, "components": [
    {"type": "body", "parameters": [
        {"type": "text", "text": "John"},
        {"type": "currency", "currency": {"fallback_value": "$10", "code": "USD", "amount_1000": 10000}}]}]}


async def test_a_refused_message_names_the_field_and_never_reaches_meta(wa_env: WaEnv) -> None:
    buttons = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"B{i}"}} for i in range(4)]
    response = await wa_env.send(to=USER, type="interactive", interactive={
        "type": "button", "body": {"text": "Pick"}, "action": {"buttons": buttons}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["field"] == "interactive.action.buttons[3]"
    response = await wa_env.send(to=USER, type="text", text={"body": "x" * 4097})
    assert response.json()["error"]["field"] == "text.body"
    response = await wa_env.send(to=USER, type="sticker")
    assert response.status_code == 400 and response.json()["error"]["field"] == "type"
    assert wa_env.server.requests == [] and wa_env.sim.stats.sent == 0


async def test_template_needs_opt_in_then_goes_with_its_parameters(wa_env: WaEnv) -> None:
    response = await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)
    assert response.status_code == 403
    assert response.json()["error"]["details"]["reason"] == "no_opt_in"
    await wa_env.opt_in()
    response = await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)
    assert response.status_code == 201, response.text
    message = response.json()
    assert message["status"] == "accepted" and message["business_initiated"] is True
    sent = wa_env.sim.sent[message["wamid"]]
    currency = sent.body["template"]["components"][0]["parameters"][1]["currency"]
    assert currency == {"fallback_value": "$10", "code": "USD", "amount_1000": 10000}
    assert sent.token == PLATFORM_TOKEN  # the number was connected without a token of its own


async def test_meta_template_errors_come_back_as_invalid_request_with_metas_detail(wa_env: WaEnv) -> None:
    await wa_env.opt_in()
    response = await wa_env.send(to=USER, type="template", template={"name": "no_such", "language": {"code": "en_US"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["field"] == "template"
    assert error["details"]["meta_code"] == 132001 and "does not exist" in error["message"]
    wrong_count = {**ORDER_TEMPLATE, "components": [{"type": "body", "parameters": [{"type": "text", "text": "J"}]}]}
    response = await wa_env.send(to=USER, type="template", template=wrong_count)
    assert response.json()["error"]["details"]["meta_code"] == 132000
    failed_id = response.json()["error"]["details"]["message_id"]
    failed = (await wa_env.client.get(f"/v1/whatsapp/messages/{failed_id}", headers=wa_env.headers)).json()
    assert failed["status"] == "failed" and failed["error"]["meta_code"] == 132000


async def test_interactive_and_reply_with_context_in_the_window(wa_env: WaEnv) -> None:
    inbound = await wa_env.inbound("Do you have it in blue?")
    response = await wa_env.send(to=USER, type="interactive", context={"message_id": inbound["id"]}, interactive={
        "type": "list", "body": {"text": "Colours"}, "action": {"button": "See colours", "sections": [
            {"rows": [{"id": "blue", "title": "Blue", "description": "in stock"}, {"id": "red", "title": "Red"}]}]}})
    assert response.status_code == 201, response.text
    message = response.json()
    assert message["business_initiated"] is False and message["context_message_id"] == inbound["id"]
    assert wa_env.sim.sent[message["wamid"]].body["context"] == {"message_id": inbound["id"]}


@pytest.mark.parametrize("wa_env", [{"own_token": True}], indirect=True)
async def test_the_workspaces_own_number_token_is_used_instead_of_the_platforms(
        wa_env: WaEnv, caplog: pytest.LogCaptureFixture) -> None:
    await wa_env.opt_in()
    refused = await wa_env.send(to=USER, type="template", template={"name": "nope", "language": {"code": "en_US"}})
    assert refused.status_code == 400 and NUMBER_TOKEN not in refused.text
    assert NUMBER_TOKEN not in caplog.text and PLATFORM_TOKEN not in caplog.text  # logged, never with the token
    response = await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)
    assert response.status_code == 201, response.text
    assert wa_env.sim.sent[response.json()["wamid"]].token == NUMBER_TOKEN
    assert wa_env.server.requests[-1].headers["authorization"] == f"Bearer {NUMBER_TOKEN}"
    numbers = (await wa_env.client.get("/v1/whatsapp/numbers", headers=wa_env.headers)).json()["data"]
    assert numbers[0]["token_source"] == "workspace" and "access_token" not in numbers[0]


@pytest.mark.parametrize("wa_env", [{"auto_statuses": ("sent", "delivered", "read")}], indirect=True)
async def test_status_moves_accepted_sent_delivered_read(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    message = (await wa_env.send(to=USER, type="text", text={"body": "Hello!"})).json()
    events = await wa_env.wait_events(STATUS, 3)
    assert [e.data["status"] for e in events] == ["sent", "delivered", "read"]
    assert all(e.data["message_id"] == message["id"] for e in events)
    got = (await wa_env.client.get(f"/v1/whatsapp/messages/{message['id']}", headers=wa_env.headers)).json()
    assert got["status"] == "read" and got["sent_at"] and got["delivered_at"] and got["read_at"]


async def test_out_of_order_statuses_never_move_back_and_failure_keeps_its_reason(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    first = (await wa_env.send(to=USER, type="text", text={"body": "one"})).json()
    second = (await wa_env.send(to=USER, type="text", text={"body": "two"})).json()
    await wa_env.sim.phone.report(first["wamid"], ["read", "delivered", "sent"])
    await wa_env.sim.phone.report(second["wamid"], ["failed"])
    await wa_env.wait_events(STATUS, 4)
    got = (await wa_env.client.get(f"/v1/whatsapp/messages/{first['id']}", headers=wa_env.headers)).json()
    assert got["status"] == "read" and got["delivered_at"] and got["sent_at"]
    failed = (await wa_env.client.get(f"/v1/whatsapp/messages/{second['id']}", headers=wa_env.headers)).json()
    assert failed["status"] == "failed" and failed["error"]["meta_errors"][0]["code"] == 131026


async def test_messages_of_another_workspace_are_not_found(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    message = (await wa_env.send(to=USER, type="text", text={"body": "mine"})).json()
    other = await wa_env.platform.workspaces.create("globex")
    response = await wa_env.client.get(f"/v1/whatsapp/messages/{message['id']}",
                                       headers={"Authorization": f"Bearer {other.token}"})
    assert response.status_code == 404
    taken = await wa_env.client.post("/v1/whatsapp/numbers", headers={"Authorization": f"Bearer {other.token}"},
                                     json={"phone_number_id": PHONE_ID, "waba_id": "1", "display_phone_number": "1"})
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "phone_number_id"


@pytest.mark.parametrize("wa_env", [{"env": {"ACCESS_TOKEN": ""}}], indirect=True)
async def test_without_any_token_the_send_is_refused_and_nothing_is_left_pending(wa_env: WaEnv) -> None:
    # No IONFLUX_WHATSAPP_ACCESS_TOKEN (the platform credential holds only the webhook secrets), and the number
    # was connected without a token of its own.
    response = await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)
    assert response.status_code == 401 and "access_token" in response.json()["error"]["message"]
    assert wa_env.sim.stats.sent == 0
    async with wa_env.platform.db.tenant(wa_env.workspace_id) as session:
        assert (await session.scalars(select(WaMessage))).all() == []


@pytest.mark.parametrize("wa_env", [{"connect": False, "env": {"PLATFORM_WABA_IDS": '["102290129340398"]'}}],
                         indirect=True)
async def test_a_number_off_the_platforms_waba_must_bring_its_token(wa_env: WaEnv) -> None:
    number = {"phone_number_id": "106540352240001", "waba_id": "999888777", "display_phone_number": "15550007777"}
    refused = await wa_env.client.post("/v1/whatsapp/numbers", json=number, headers=wa_env.headers)
    assert refused.status_code == 400 and refused.json()["error"]["field"] == "access_token"
    ok = await wa_env.client.post("/v1/whatsapp/numbers", json={**number, "access_token": NUMBER_TOKEN},
                                  headers=wa_env.headers)
    assert ok.status_code == 201 and ok.json()["token_source"] == "workspace"
    on_platform = await wa_env.client.post("/v1/whatsapp/numbers", headers=wa_env.headers, json={
        "phone_number_id": PHONE_ID, "waba_id": "102290129340398", "display_phone_number": "15550001111"})
    assert on_platform.status_code == 201 and on_platform.json()["token_source"] == "platform"


async def test_statuses_that_race_the_send_are_not_lost(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    wa_env.sim.early_statuses = ("sent", "delivered")  # webhooks accepted before Meta answers the send
    message = (await wa_env.send(to=USER, type="text", text={"body": "quick"})).json()
    await wa_env.wait_events(STATUS, 2)
    got = (await wa_env.client.get(f"/v1/whatsapp/messages/{message['id']}", headers=wa_env.headers)).json()
    assert got["status"] == "delivered" and got["sent_at"] and got["delivered_at"]
