"""Sending through SMTP (aiosmtplib) to the sink: single, templated, batch, suppression, idempotency, tracking."""

from __future__ import annotations

from typing import Any

from ionflux.core.platform import Platform
from tests.conftest import WorkspaceHandle
from tests.email_support import SENDER, email_env


async def test_single_send_reaches_the_sink_with_history_and_events(platform: Platform,
                                                                    workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        sent = await env.send(to=["ana@example.com", {"email": "bo@example.com", "name": "Bo"}],
                              cc=["cy@example.com"], bcc=["hidden@example.com"], subject="Olá",
                              text="plain body", html="<p>html body</p>", tags=["welcome"],
                              headers={"X-Campaign": "c1"})
        assert sent["status"] == "sent" and sent["provider"] == "smtp"
        [mail] = env.sink.messages
        assert sorted(mail.rcpt_tos) == ["ana@example.com", "bo@example.com", "cy@example.com", "hidden@example.com"]
        msg = mail.message
        assert msg["Subject"] == "Olá" and msg["X-Campaign"] == "c1" and "hidden" not in str(msg)
        assert msg["Message-ID"] == f"<{sent['message_id']}@shop.example.com>"
        assert mail.body("plain").strip() == "plain body" and "<p>html body</p>" in mail.body("html")
        view = await env.message(sent["message_id"])
        assert [h["status"] for h in view["history"]] == ["queued", "sent"]
        assert all(h["at"] for h in view["history"])
        types = [e.type for e in await env.events()]
        assert types == ["platform.email.events.messages.queued", "platform.email.events.messages.sent"]


async def test_invalid_address_is_a_400_naming_it(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        error = (await env.send(expect=400, to=["ok@example.com", "not-an-address"], subject="s", text="t"))["error"]
        assert error["field"] == "to[1]" and "not-an-address" in error["message"]
        error = (await env.send(expect=400, to=["a@example.com"], subject="s"))["error"]
        assert error["field"] == "text"
        assert not env.sink.messages


async def test_template_renders_in_a_sandbox_with_autoescape(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        put = await env.client.put("/v1/email/templates/welcome", headers=env.headers, json={
            "subject": "Hi {{ name }}", "text": "Hello {{ name }}", "html": "<p>Hello {{ name }}</p>"})
        assert put.status_code == 200 and put.json()["version"] == 1
        sent = await env.send(to=["ana@example.com"], template_id="welcome",
                              template_data={"name": "<script>x</script>"})
        assert sent["status"] == "sent"
        mail = env.sink.messages[0]
        assert "&lt;script&gt;x&lt;/script&gt;" in mail.body("html") and "<script>" not in mail.body("html")
        assert mail.body("plain").strip() == "Hello <script>x</script>"  # text is not HTML: no escaping
        got = await env.client.get("/v1/email/templates/welcome", headers=env.headers)
        assert got.json()["subject"] == "Hi {{ name }}"
        assert (await env.client.delete("/v1/email/templates/welcome", headers=env.headers)).status_code == 204
        assert (await env.client.get("/v1/email/templates/welcome", headers=env.headers)).status_code == 404


async def test_malicious_template_is_contained(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        evil = {
            "subject": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            "text": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        }
        assert (await env.client.put("/v1/email/templates/evil", headers=env.headers,
                                     json=evil)).status_code == 200
        error = (await env.send(expect=400, to=["a@example.com"], template_id="evil"))["error"]
        assert error["field"] == "template_data" and "unsafe" in error["message"]
        # Data cannot escape either: attribute walks on values are refused, and a bomb is bounded.
        await env.client.put("/v1/email/templates/data", headers=env.headers,
                             json={"subject": "s", "text": "{{ x.__class__ }} {{ 'a' * n }}"})
        error = (await env.send(expect=400, to=["a@example.com"], template_id="data",
                                template_data={"x": 1, "n": 10**9}))["error"]
        assert error["field"] == "template_data"
        bad = await env.client.put("/v1/email/templates/broken", headers=env.headers,
                                   json={"subject": "s", "html": "{% if %}"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "html"
        assert not env.sink.messages


async def test_suppressed_recipient_is_refused_and_reported(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        added = await env.client.post("/v1/email/suppressions", headers=env.headers,
                                      json={"email": "Gone@Example.com", "reason": "manual"})
        assert added.status_code == 201 and added.json()["email"] == "gone@example.com"
        sent = await env.send(to=["gone@example.com", "here@example.com"], subject="s", text="t")
        assert sent["status"] == "sent"
        assert sent["refused"] == [{"email": "gone@example.com", "reason": "suppressed (manual)"}]
        assert env.sink.messages[0].rcpt_tos == ["here@example.com"]
        only = await env.send(to=["gone@example.com"], subject="s", text="t")
        assert only["status"] == "dropped" and only["refused"][0]["email"] == "gone@example.com"
        assert len(env.sink.messages) == 1
        listed = (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()
        assert [s["email"] for s in listed["suppressions"]] == ["gone@example.com"]
        assert (await env.client.delete("/v1/email/suppressions/gone@example.com",
                                        headers=env.headers)).status_code == 204
        assert (await env.send(to=["gone@example.com"], subject="s", text="t"))["status"] == "sent"


async def test_idempotent_resend_returns_the_first_result(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        body: dict[str, Any] = {"to": ["a@example.com"], "subject": "s", "text": "t", "idempotency_key": "order-42"}
        first = await env.send(**body)
        again = await env.send(**body)
        assert again["message_id"] == first["message_id"] and again["idempotent_replay"] is True
        assert len(env.sink.messages) == 1


async def test_batch_with_per_recipient_data_and_results(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with email_env(platform, workspace.id, workspace.token) as env:
        await env.client.post("/v1/email/suppressions", headers=env.headers, json={"email": "x3@example.com"})
        recipients = [{"to": f"x{i}@example.com", "template_data": {"name": f"N{i}"}} for i in range(6)]
        recipients += [{"to": "bad address"}, {"to": "x1@example.com"}, {"to": "x5@example.com", "template_data": {}}]
        response = await env.client.post("/v1/email/batch", headers=env.headers, json={
            "from": SENDER, "subject": "For {{ name }}", "html": "<b>{{ name }}</b>", "text": "Dear {{ name }}",
            "recipients": recipients, "tags": ["promo"], "marketing": True})
        assert response.status_code == 200, response.text
        result = response.json()
        statuses = [(r["email"], r["status"]) for r in result["results"]]
        assert statuses[:6] == [(f"x{i}@example.com", "refused" if i == 3 else "sent") for i in range(6)]
        assert [r["status"] for r in result["results"][6:]] == ["refused", "refused", "refused"]
        assert "duplicate" in result["results"][7]["error"]
        assert result["accepted"] == 5 and result["refused"] == 4
        by_rcpt = {m.rcpt_tos[0]: m for m in env.sink.messages}
        assert sorted(by_rcpt) == [f"x{i}@example.com" for i in (0, 1, 2, 4, 5)]
        assert by_rcpt["x2@example.com"].message["Subject"] == "For N2"
        assert by_rcpt["x2@example.com"].body("plain").strip() == "Dear N2"
        assert "<b>N4</b>" in by_rcpt["x4@example.com"].body("html")
        assert by_rcpt["x0@example.com"].message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        listed = (await env.client.get("/v1/email/messages", headers=env.headers,
                                       params={"tag": "promo", "status": "sent"})).json()
        assert len(listed["messages"]) == 5
        assert (await env.client.get("/v1/email/messages", headers=env.headers,
                                     params={"tag": "other"})).json()["messages"] == []
