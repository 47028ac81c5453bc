"""Scheduled sends picked up by the worker (an injected clock, no waiting for time to pass) and the one-click
unsubscribe endpoint (a GET only shows a button; a POST unsubscribes; a forged token is refused)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ionflux.core.platform import Platform
from ionflux.email.settings import EmailSettings
from tests.conftest import WorkspaceHandle
from tests.email_support import SENDER, EmailEnv, email_env
from tests.polling import until


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@asynccontextmanager
async def clocked_env(platform: Platform, workspace: WorkspaceHandle) -> AsyncIterator[tuple[EmailEnv, Clock]]:
    clock = Clock()
    settings = EmailSettings(worker_poll_seconds=0.05, public_url="https://mail.ionflux.example")
    async with email_env(platform, workspace.id, workspace.token, settings=settings, clock=clock) as env:
        yield env, clock


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_scheduled_send_and_batch_go_out_when_due(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with clocked_env(platform, workspace) as (env, clock):
        due = clock.now + timedelta(hours=2)
        single = await env.send(to=["a@example.com"], subject="later", text="t", send_at=_at(due))
        batch = await env.client.post("/v1/email/batch", headers=env.headers, json={
            "from": SENDER, "subject": "Hi {{ n }}", "text": "t", "send_at": _at(due),
            "recipients": [{"to": f"b{i}@example.com", "template_data": {"n": i}} for i in range(3)]})
        assert single["status"] == "queued" and batch.status_code == 200, batch.text
        assert {r["status"] for r in batch.json()["results"]} == {"queued"}
        view = await env.message(single["message_id"])
        assert _time(view["send_at"]) == due
        assert await env.plugin.worker.run_once() == 0 and not env.sink.messages  # not due yet
        clock.now = due - timedelta(seconds=1)
        assert await env.plugin.worker.run_once() == 0 and not env.sink.messages
        clock.now = due + timedelta(seconds=1)
        env.plugin.worker.wake()  # the background worker, on its own round

        async def all_sent() -> bool:
            listed = await env.client.get("/v1/email/messages", headers=env.headers, params={"status": "sent"})
            return len(listed.json()["messages"]) == 4
        await until(all_sent)
        assert len(env.sink.messages) == 4
        view = await env.message(single["message_id"])
        assert view["status"] == "sent" and [h["status"] for h in view["history"]] == ["queued", "sent"]
        assert _time(view["history"][-1]["at"]) == clock.now
        assert sorted(m.message["Subject"] for m in env.sink.messages) == ["Hi 0", "Hi 1", "Hi 2", "later"]
        assert await env.plugin.worker.run_once() == 0 and len(env.sink.messages) == 4  # sent once


async def test_send_at_bounds(platform: Platform, workspace: WorkspaceHandle) -> None:
    async with clocked_env(platform, workspace) as (env, clock):
        error = (await env.send(expect=400, to=["a@example.com"], subject="s", text="t",
                                send_at=_at(clock.now + timedelta(days=31))))["error"]
        assert error["field"] == "send_at"
        past = await env.send(to=["a@example.com"], subject="s", text="t", send_at=_at(clock.now - timedelta(hours=1)))
        assert past["status"] == "sent"  # a time already past means now


def _unsubscribe_path(env: EmailEnv, index: int = 0) -> str:
    header = str(env.sink.messages[index].message["List-Unsubscribe"])
    assert header.startswith("<https://mail.ionflux.example/v1/email/unsubscribe/") and header.endswith(">")
    return header[1:-1].removeprefix("https://mail.ionflux.example")


def _forge(path: str) -> list[str]:
    prefix, token = path.rsplit("/", 1)
    body, mac = token.split(".")
    flipped = mac[:-2] + ("AA" if not mac.endswith("AA") else "BB")
    other = base64.urlsafe_b64encode(base64.urlsafe_b64decode(body + "==").replace(
        b"ana@example.com", b"bob@example.com")).decode().rstrip("=")
    return [f"{prefix}/{body}.{flipped}", f"{prefix}/{other}.{mac}", f"{prefix}/not-a-token"]


async def test_unsubscribe_get_shows_a_button_post_unsubscribes(platform: Platform,
                                                                workspace: WorkspaceHandle) -> None:
    async with clocked_env(platform, workspace) as (env, _clock):
        plain = await env.send(to=["ana@example.com"], subject="receipt", text="t")
        assert plain["status"] == "sent" and env.sink.messages[0].message["List-Unsubscribe"] is None
        sent = await env.send(to=["ana@example.com"], subject="news", text="t", marketing=True)
        path = _unsubscribe_path(env, 1)
        assert env.sink.messages[1].message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        page = await env.client.get(path)  # no login: the token is the authority
        assert page.status_code == 200 and "<button" in page.text and 'method="post"' in page.text
        listed: dict[str, Any] = (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()
        assert listed["total"] == 0 and (await env.message(sent["message_id"]))["status"] == "sent"
        for forged in _forge(path):
            for method in ("GET", "POST"):
                response = await env.client.request(method, forged, content=b"List-Unsubscribe=One-Click")
                assert response.status_code == 400 and response.json()["error"]["field"] == "token", forged
        assert (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()["total"] == 0
        done = await env.client.post(path, content=b"List-Unsubscribe=One-Click",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert done.status_code == 200 and done.json() == {"email": "ana@example.com", "unsubscribed": True}
        assert (await env.client.post(path)).status_code == 200  # clicking twice changes nothing more
        listed = (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()
        assert [(s["email"], s["reason"], s["message_id"]) for s in listed["suppressions"]] == [
            ("ana@example.com", "unsubscribe", sent["message_id"])]
        view = await env.message(sent["message_id"])
        assert [h["status"] for h in view["history"]] == ["queued", "sent", "unsubscribed"]
        assert [e.type for e in await env.events()].count("platform.email.events.messages.unsubscribed") == 1
        again = await env.send(to=["ana@example.com"], subject="news", text="t", marketing=True)
        assert again["status"] == "dropped" and len(env.sink.messages) == 2
