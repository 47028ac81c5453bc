"""The 24-hour customer-service window (on a movable clock, no sleeping), opt-in, and STOP / START."""

from __future__ import annotations

from tests import whatsapp_fixtures
from tests.test_whatsapp_send import ORDER_TEMPLATE
from tests.whatsapp_fixtures import RECEIVED, USER, WaEnv

wa_env = whatsapp_fixtures.wa_env  # the shared fixture, used by name


async def test_window_opened_by_an_inbound_message_and_closed_after_24_hours(wa_env: WaEnv) -> None:
    before = await wa_env.send(to=USER, type="text", text={"body": "hello?"})
    assert before.status_code == 400
    error = before.json()["error"]
    assert error["code"] == "OUTSIDE_SERVICE_WINDOW" and "template" in error["message"]
    assert error["details"]["suggestion"] == "template" and wa_env.sim.stats.sent == 0

    await wa_env.inbound("Hi, where is my order?")
    wa_env.clock.advance(hours=23, minutes=59)
    inside = await wa_env.send(to=USER, type="text", text={"body": "On its way!"})
    assert inside.status_code == 201, inside.text

    wa_env.clock.advance(minutes=1, seconds=1)  # 24 h and 1 s after the user wrote
    outside = await wa_env.send(to=USER, type="text", text={"body": "Anything else?"})
    assert outside.status_code == 400 and outside.json()["error"]["code"] == "OUTSIDE_SERVICE_WINDOW"
    await wa_env.opt_in()
    template = await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)
    assert template.status_code == 201 and template.json()["business_initiated"] is True

    await wa_env.inbound("thanks")  # the user writes again: the window reopens
    wa_env.clock.offset = wa_env.clock.offset.__class__(0)
    again = await wa_env.send(to=USER, type="text", text={"body": "You're welcome"})
    assert again.status_code == 201, again.text


async def test_metas_131047_is_mapped_to_outside_service_window(wa_env: WaEnv) -> None:
    await wa_env.inbound("hi")
    wa_env.sim.windows.clear()  # Meta disagrees (its window closed): it answers 131047
    response = await wa_env.send(to=USER, type="text", text={"body": "late reply"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "OUTSIDE_SERVICE_WINDOW" and error["details"]["meta_code"] == 131047
    assert "template" in error["message"]


async def test_stop_opts_out_in_several_languages_and_start_resubscribes(wa_env: WaEnv) -> None:
    await wa_env.opt_in()
    assert (await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)).status_code == 201

    await wa_env.inbound("please don't stop the deals")  # not a keyword: the whole message must be one
    consent = (await wa_env.client.get(f"/v1/whatsapp/contacts/{USER}/consent", headers=wa_env.headers)).json()
    assert consent["status"] == "opted_in"

    await wa_env.inbound("  Stop ")
    consent = (await wa_env.client.get(f"/v1/whatsapp/contacts/{USER}/consent", headers=wa_env.headers)).json()
    assert consent["status"] == "opted_out" and consent["keyword"] == "  Stop " and consent["source"] == "keyword"
    assert wa_env.of(RECEIVED)[-1].data["consent"] == "opted_out"
    refused = await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)
    assert refused.status_code == 403 and refused.json()["error"]["details"]["reason"] == "opted_out"
    # The user wrote, so a customer-service reply (free-form, in the window) may still confirm it.
    assert (await wa_env.send(to=USER, type="text", text={"body": "You're unsubscribed."})).status_code == 201

    await wa_env.inbound("START")
    assert (await wa_env.send(to=USER, type="template", template=ORDER_TEMPLATE)).status_code == 201
    await wa_env.inbound("ARRÊTER")  # French, accented
    consent = (await wa_env.client.get(f"/v1/whatsapp/contacts/{USER}/consent", headers=wa_env.headers)).json()
    assert consent["status"] == "opted_out"
    await wa_env.inbound("Iniciar")  # Spanish / Portuguese
    consent = (await wa_env.client.get(f"/v1/whatsapp/contacts/{USER}/consent", headers=wa_env.headers)).json()
    assert consent["status"] == "opted_in" and consent["opted_out_at"] and consent["opted_in_at"]


async def test_consent_endpoints(wa_env: WaEnv) -> None:
    url = f"/v1/whatsapp/contacts/+{USER}/consent"
    unknown = (await wa_env.client.get(url, headers=wa_env.headers)).json()
    assert unknown["status"] == "unknown" and unknown["wa_id"] == USER
    missing = await wa_env.client.put(url, headers=wa_env.headers, json={"source": "checkout"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "text_shown"
    given = await wa_env.client.put(url, headers=wa_env.headers, json={
        "source": "checkout", "text_shown": "I agree to get order updates from Acme on WhatsApp",
        "opted_in_at": "2026-11-01T10:00:00Z"})
    assert given.status_code == 200
    assert given.json()["status"] == "opted_in" and given.json()["opted_in_at"].startswith("2026-11-01T10:00")
    withdrawn = await wa_env.client.delete(url, headers=wa_env.headers)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "opted_out"
    assert withdrawn.json()["text_shown"].startswith("I agree")  # the record of the opt-in stays
    bad = await wa_env.client.get("/v1/whatsapp/contacts/12ab456789/consent", headers=wa_env.headers)
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "wa_id"
    anonymous = await wa_env.client.get(url)
    assert anonymous.status_code == 401
