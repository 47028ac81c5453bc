"""AWS SES v2 through boto3 against moto in server mode: single, templated and batch sends (SendEmail and
SendBulkEmail), the account's quota, throttling retried with backoff, failover, and whose credential is used."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ionflux.core.models import PLATFORM_WORKSPACE
from ionflux.core.platform import Platform
from ionflux.email.providers.ses import SesProvider
from ionflux.email.providers.ses_quota import AccountAllowance, SendQuota
from ionflux.email.providers.smtp import SmtpProvider
from ionflux.email.settings import EmailSettings, SesSettings, SmtpSettings
from ionflux.sandbox.smtp_sink import SmtpSink
from tests import email_ses_support
from tests.conftest import WorkspaceHandle
from tests.email_ses_support import PLATFORM_KEYS, WORKSPACE_KEYS, WireTap, sent_messages
from tests.email_support import SENDER, EmailEnv, email_env

moto_server = email_ses_support.moto_server  # the shared fixtures, used by name
moto_ses = email_ses_support.moto_ses


@asynccontextmanager
async def ses_env(platform: Platform, workspace: WorkspaceHandle, url: str, *, tap: WireTap | None = None,
                  provider: str = "ses", fallback: str | None = None, sns_fetcher: Any = None,
                  **ses: Any) -> AsyncIterator[tuple[EmailEnv, SesProvider, WireTap]]:
    tap = tap or WireTap()
    sleeps: list[float] = []

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)

    options: dict[str, Any] = {"base_url": url, "max_send_rate": 500.0, "backoff_base": 0.001, **ses}
    adapter = SesProvider(SesSettings(**options), session=tap.session(), sleep=no_wait)

    def providers(sink: SmtpSink) -> dict[str, Any]:
        return {"ses": adapter, "smtp": SmtpProvider(SmtpSettings(host=sink.host, port=sink.port))}

    await platform.vault.put(PLATFORM_WORKSPACE, "ses", PLATFORM_KEYS)
    settings = EmailSettings(provider=provider, fallback_provider=fallback, worker_poll_seconds=0.05)
    options = {"sns_fetcher": sns_fetcher} if sns_fetcher is not None else {}
    async with email_env(platform, workspace.id, workspace.token, settings=settings, providers=providers,
                         **options) as env:
        env.extra["sleeps"] = sleeps
        yield env, adapter, tap


async def test_single_send_goes_through_moto_with_our_ids(platform: Platform, workspace: WorkspaceHandle,
                                                          moto_ses: str) -> None:
    async with ses_env(platform, workspace, moto_ses) as (env, adapter, tap):
        sent = await env.send(to=[{"email": "ana@example.com", "name": "Ana"}], cc=["cy@example.com"],
                              subject="Olá", text="plain", html="<p>html</p>", headers={"X-Campaign": "c1"})
        assert sent["status"] == "sent" and sent["provider"] == "ses", sent
        [mail] = sent_messages()
        assert mail.source == SENDER and mail.subject == "Olá" and mail.body == "<p>html</p>"
        assert mail.destinations == {"ToAddresses": ["Ana <ana@example.com>"], "CcAddresses": ["cy@example.com"]}
        view = await env.message(sent["message_id"])
        assert view["provider_message_id"] == mail.id
        assert [h["status"] for h in view["history"]] == ["queued", "sent"]
        [call] = tap.of("SendEmail")
        assert call.access_key_id == PLATFORM_KEYS["access_key_id"]
        tags = {t["Name"]: t["Value"] for t in call.body["EmailTags"]}
        assert tags == {"ionflux_message_id": sent["message_id"], "ionflux_workspace": workspace.id}
        headers = {h["Name"]: h["Value"] for h in call.body["Content"]["Simple"]["Headers"]}
        assert headers["X-Campaign"] == "c1" and headers["X-Ionflux-Message-Id"] == sent["message_id"]
        assert call.body["Content"]["Simple"]["Body"]["Text"] == {"Data": "plain", "Charset": "UTF-8"}
        # GetAccount is missing from moto: the adapter paced at the configured rate instead of failing.
        assert adapter.calls["GetAccount"] == 1


async def test_unverified_sender_is_rejected_not_retried(platform: Platform, workspace: WorkspaceHandle,
                                                         moto_ses: str) -> None:
    async with ses_env(platform, workspace, moto_ses) as (env, _adapter, tap):
        unverified: dict[str, Any] = {"from": "someone@unverified.example.org"}
        sent = await env.send(**unverified, to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "failed"
        view = await env.message(sent["message_id"])
        assert "MessageRejected" in view["last_error"] and view["history"][-1]["detail"]["kind"] == "rejected"
        assert len(tap.of("SendEmail")) == 1 and not sent_messages()


async def test_headers_beyond_simple_content_go_as_raw_mime(platform: Platform, workspace: WorkspaceHandle,
                                                            moto_ses: str) -> None:
    async with ses_env(platform, workspace, moto_ses) as (env, _adapter, tap):
        sent = await env.send(to=["a@example.com"], subject="s", text="t", headers={"X-Note": "café"})
        assert sent["status"] == "sent"
        [call] = tap.of("SendEmail")
        assert "Raw" in call.body["Content"]
        [mail] = sent_messages()
        assert "X-Ionflux-Message-Id: " + sent["message_id"] in mail.raw_data and "X-Note:" in mail.raw_data


async def _batch(env: EmailEnv, count: int) -> dict[str, Any]:
    await env.client.put("/v1/email/templates/promo", headers=env.headers, json={
        "subject": "{{ name }}, 20% off", "html": "<p>Hi {{ name }}, code {{ code }}</p>", "text": "Hi {{ name }}"})
    recipients = [{"to": f"r{i}@example.com", "template_data": {"name": f"<N{i}>", "code": f"C{i}"}}
                  for i in range(count)]
    response = await env.client.post("/v1/email/batch", headers=env.headers, json={
        "from": SENDER, "template_id": "promo", "recipients": recipients})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _by_recipient() -> dict[str, Any]:
    return {m.destinations["ToAddresses"][0]: m for m in sent_messages()}


async def test_templated_batch_in_bulk_calls_of_fifty(platform: Platform, workspace: WorkspaceHandle,
                                                      moto_ses: str) -> None:
    async with ses_env(platform, workspace, moto_ses) as (env, adapter, tap):
        result = await _batch(env, 120)
        assert {r["status"] for r in result["results"]} == {"sent"}
        assert adapter.calls["SendBulkEmail"] == 3 and adapter.calls["SendEmail"] == 0
        assert sorted(len(c.body["BulkEmailEntries"]) for c in tap.of("SendBulkEmail")) == [20, 50, 50]
        mails = _by_recipient()
        assert len(mails) == 120
        assert mails["r7@example.com"].subject == "<N7>, 20% off"
        assert mails["r7@example.com"].body == "<p>Hi &lt;N7&gt;, code C7</p>"  # escaped by us; SES escapes nothing
        entry = tap.of("SendBulkEmail")[0].body["BulkEmailEntries"][0]
        assert {t["Name"] for t in entry["ReplacementTags"]} == {"ionflux_message_id", "ionflux_workspace"}
        view = await env.message(result["results"][7]["message_id"])
        assert view["provider_message_id"] == mails["r7@example.com"].id


async def test_templated_batch_one_send_email_each_without_bulk(platform: Platform, workspace: WorkspaceHandle,
                                                                moto_ses: str) -> None:
    async with ses_env(platform, workspace, moto_ses, bulk=False) as (env, adapter, _tap):
        result = await _batch(env, 30)
        assert result["accepted"] == 30 and {r["status"] for r in result["results"]} == {"sent"}
        assert adapter.calls["SendEmail"] == 30 and adapter.calls["SendBulkEmail"] == 0
        assert _by_recipient()["r3@example.com"].body == "<p>Hi &lt;N3&gt;, code C3</p>"


async def test_throttling_is_retried_with_growing_backoff(platform: Platform, workspace: WorkspaceHandle,
                                                          moto_ses: str) -> None:
    tap = WireTap(faults=[("SendEmail", 429, "TooManyRequestsException")] * 3)
    async with ses_env(platform, workspace, moto_ses, tap=tap) as (env, _adapter, _tap):
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        assert sent["status"] == "sent" and len(sent_messages()) == 1
        assert len(tap.of("SendEmail")) == 4
        sleeps = env.extra["sleeps"]
        assert len(sleeps) == 3 and sleeps[0] < sleeps[2]
        # Past the retry budget the message waits in the queue for a later round (nothing was accepted).
        tap.faults.extend([("SendEmail", 429, "TooManyRequestsException")] * 6)
        later = await env.send(to=["b@example.com"], subject="s", text="t")
        assert later["status"] == "queued"
        view = await env.message(later["message_id"])
        assert "throttled" in view["last_error"] and len(sent_messages()) == 1


async def test_account_quota_paces_and_failover_takes_the_rest(platform: Platform, workspace: WorkspaceHandle,
                                                               moto_ses: str) -> None:
    quota = {"SendQuota": {"Max24HourSend": 10.0, "MaxSendRate": 7.0, "SentLast24Hours": 7.0},
             "SendingEnabled": True}
    async with ses_env(platform, workspace, moto_ses, tap=WireTap(quota=quota), fallback="smtp",
                       max_send_rate=None) as (env, adapter, tap):
        result = await _batch(env, 5)
        by_provider = [(await env.message(r["message_id"]))["provider"] for r in result["results"]]
        assert sorted(by_provider) == ["ses", "ses", "ses", "smtp", "smtp"]  # 3 left of the 24-hour quota
        assert len(sent_messages()) == 3 and len(env.sink.messages) == 2
        [allowance] = adapter._allowances.values()
        assert allowance.rate == 7.0 and allowance.remaining == 0
        assert all(len(c.body["BulkEmailEntries"]) <= 7 for c in tap.of("SendBulkEmail"))


async def test_server_errors_fail_over_to_smtp_without_double_send(platform: Platform, workspace: WorkspaceHandle,
                                                                   moto_ses: str) -> None:
    tap = WireTap(faults=[("SendEmail", 503, "ServiceUnavailable")] * 3)
    async with ses_env(platform, workspace, moto_ses, tap=tap, fallback="smtp",
                       throttle_retries=2) as (env, _adapter, _tap):
        body: dict[str, Any] = {"to": ["a@example.com"], "subject": "s", "text": "t", "idempotency_key": "k-ses"}
        sent = await env.send(**body)
        assert sent["status"] == "sent" and sent["provider"] == "smtp"
        assert len(tap.of("SendEmail")) == 3 and not sent_messages() and len(env.sink.messages) == 1
        assert (await env.send(**body))["idempotent_replay"] is True
        assert await env.plugin.worker.run_once() == 0 and len(env.sink.messages) == 1


async def test_workspace_chooses_ses_with_its_own_keys(platform: Platform, workspace: WorkspaceHandle,
                                                       other_workspace: WorkspaceHandle, moto_ses: str) -> None:
    async with ses_env(platform, workspace, moto_ses, provider="smtp") as (env, _adapter, tap):
        other = {"Authorization": f"Bearer {other_workspace.token}"}
        for headers in (env.headers, other):
            chosen = await env.client.put("/v1/email/settings", headers=headers, json={"provider": "ses"})
            assert chosen.status_code == 200 and chosen.json()["provider"] == "ses", chosen.text
        put = await env.client.put("/v1/credentials/ses", headers=env.headers, json={"secrets": WORKSPACE_KEYS})
        assert put.status_code in (200, 201), put.text
        mine = await env.send(to=["a@example.com"], subject="s", text="t")
        theirs = await env.send(auth=other, to=["b@example.com"], subject="s", text="t")
        assert mine["provider"] == theirs["provider"] == "ses"
        used = [c.access_key_id for c in tap.of("SendEmail")]
        assert used == [WORKSPACE_KEYS["access_key_id"], PLATFORM_KEYS["access_key_id"]]
        assert not env.sink.messages and len(sent_messages()) == 2


def test_allowance_is_a_bucket_of_one_seconds_rate_and_a_daily_remainder() -> None:
    now = [100.0]
    quota = SendQuota.from_get_account({"SendQuota": {"MaxSendRate": 7.0, "Max24HourSend": 50.0,
                                                      "SentLast24Hours": 45.0}})
    allowance = AccountAllowance(quota, clock=lambda: now[0])
    assert allowance.burst == 7 and allowance.remaining == 5
    assert allowance.take_daily(5) and not allowance.take_daily(1)
    allowance.give_back(2)
    assert allowance.take_daily(2) and allowance.remaining == 0
    allowance.limiter._bucket("send", now[0]).level = 7.0  # a full second's worth just spent
    assert allowance.limiter.available("send") == 0
    now[0] += 0.5
    assert allowance.limiter.available("send") == pytest.approx(3.5)
    unlimited = AccountAllowance(SendQuota.from_get_account({"SendQuota": {"MaxSendRate": 0.5,
                                                                           "Max24HourSend": -1}}))
    assert unlimited.burst == 1 and unlimited.take_daily(10**9)


async def test_quota_is_read_again_after_the_refresh_period(platform: Platform, workspace: WorkspaceHandle,
                                                            moto_ses: str) -> None:
    quota = {"SendQuota": {"Max24HourSend": 100.0, "MaxSendRate": 50.0, "SentLast24Hours": 0.0}}
    tap = WireTap(quota=quota)
    async with ses_env(platform, workspace, moto_ses, tap=tap, max_send_rate=None,
                       quota_refresh_seconds=3600) as (env, adapter, _tap):
        assert (await env.send(to=["a@example.com"], subject="s", text="t"))["status"] == "sent"
        assert (await env.send(to=["b@example.com"], subject="s", text="t"))["status"] == "sent"
        assert adapter.calls["GetAccount"] == 1  # cached within the period
        [allowance] = adapter._allowances.values()
        assert allowance.remaining == 98
        allowance.read_at -= 3601  # the period has passed
        tap.quota = {"SendQuota": {"Max24HourSend": 100.0, "MaxSendRate": 50.0, "SentLast24Hours": 100.0}}
        later = await env.send(to=["c@example.com"], subject="s", text="t")
        assert adapter.calls["GetAccount"] == 2 and later["status"] == "queued"  # SES says the day is used up
        assert "24-hour quota" in (await env.message(later["message_id"]))["last_error"]
