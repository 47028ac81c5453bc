"""SES notifications through SNS at /webhooks/ses: signature checked by the shared SNS verifier (certificate
fetched through the injected fetcher), Bounce/Complaint/Delivery mapped onto message status, hard bounces and
complaints suppressed, forged deliveries refused, subscriptions confirmed, duplicates counted once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from ionflux.core.platform import Platform
from tests import email_ses_support
from tests.conftest import WorkspaceHandle
from tests.email_ses_support import WireTap
from tests.email_support import SENDER, EmailEnv
from tests.polling import until
from tests.test_email_ses import ses_env
from tests.webhook_helpers import SnsKeys, sns_headers, sns_message

moto_server = email_ses_support.moto_server  # the shared fixtures, used by name
moto_ses = email_ses_support.moto_ses
OWN_TOPIC = "arn:aws:sns:us-east-1:123456789012:acme-ses-feedback"
PLATFORM_TOPIC = "arn:aws:sns:us-east-1:123456789012:ionflux-ses-feedback"


@asynccontextmanager
async def feedback_env(platform: Platform, workspace: WorkspaceHandle, moto: str,
                       ) -> AsyncIterator[tuple[EmailEnv, SnsKeys, list[str]]]:
    keys = SnsKeys.generate()
    fetched: list[str] = []

    async def fetcher(url: str) -> bytes:
        fetched.append(url)
        return keys.cert_pem if url.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"

    async with ses_env(platform, workspace, moto, tap=WireTap(), sns_fetcher=fetcher) as (env, _adapter, _tap):
        yield env, keys, fetched
        pipeline = getattr(env.app.state, "webhooks", None)
        if pipeline is not None:
            await pipeline.drain()
            await pipeline.inbox.close()


def notification(kind: str, mail: dict[str, Any], **detail: Any) -> str:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    body: dict[str, Any] = {"notificationType": kind, "mail": {"timestamp": now, "source": SENDER, **mail}}
    body[kind.lower()] = {"timestamp": now, **detail}
    return json.dumps(body)


def bounce(mail: dict[str, Any], email: str, bounce_type: str = "Permanent") -> str:
    return notification("Bounce", mail, bounceType=bounce_type, bounceSubType="General", feedbackId="fb-1",
                        bouncedRecipients=[{"emailAddress": email, "action": "failed", "status": "5.1.1",
                                            "diagnosticCode": "smtp; 550 5.1.1 user unknown"}])


async def post(env: EmailEnv, doc: dict[str, Any]) -> int:
    response = await env.client.post("/webhooks/ses", content=json.dumps(doc).encode(), headers=sns_headers(doc))
    return response.status_code


async def reaches(env: EmailEnv, message_id: str, status: str) -> dict[str, Any]:
    async def done() -> bool:
        return (await env.message(message_id))["status"] == status
    await until(done)
    return await env.message(message_id)


async def suppressions(env: EmailEnv) -> dict[str, str]:
    listed = (await env.client.get("/v1/email/suppressions", headers=env.headers)).json()["suppressions"]
    return {s["email"]: s["reason"] for s in listed}


async def test_own_topic_feedback_moves_status_and_suppresses(platform: Platform, workspace: WorkspaceHandle,
                                                              moto_ses: str) -> None:
    async with feedback_env(platform, workspace, moto_ses) as (env, keys, fetched):
        chosen = await env.client.put("/v1/email/settings", headers=env.headers,
                                      json={"provider": "ses", "ses_topic_arn": OWN_TOPIC})
        assert chosen.status_code == 200, chosen.text
        hard = await env.send(to=["gone@example.com"], subject="s", text="t")
        soft = await env.send(to=["full@example.com"], subject="s", text="t")
        angry = await env.send(to=["angry@example.com"], subject="s", text="t")
        fine = await env.send(to=["fine@example.com"], subject="s", text="t")
        ses_id = {m["message_id"]: (await env.message(m["message_id"]))["provider_message_id"]
                  for m in (hard, soft, angry, fine)}
        # Identity notifications carry SES's message id only: matched through provider_message_id.
        docs = [
            sns_message(keys, message_id="sns-1", topic_arn=OWN_TOPIC,
                        message=bounce({"messageId": ses_id[hard["message_id"]]}, "gone@example.com")),
            sns_message(keys, message_id="sns-2", topic_arn=OWN_TOPIC,
                        message=bounce({"messageId": ses_id[soft["message_id"]]}, "full@example.com", "Transient")),
            sns_message(keys, message_id="sns-3", topic_arn=OWN_TOPIC, message=notification(
                "Complaint", {"messageId": ses_id[angry["message_id"]]}, complaintFeedbackType="abuse",
                complainedRecipients=[{"emailAddress": "angry@example.com"}])),
            sns_message(keys, message_id="sns-4", topic_arn=OWN_TOPIC, message=notification(
                "Delivery", {"messageId": ses_id[fine["message_id"]]}, recipients=["fine@example.com"],
                smtpResponse="250 ok")),
        ]
        assert [await post(env, doc) for doc in docs] == [200] * 4
        view = await reaches(env, hard["message_id"], "bounced")
        assert view["history"][-1]["detail"]["bounce_type"] == "Permanent"
        assert (await reaches(env, soft["message_id"], "bounced"))["history"][-1]["recipient"] == "full@example.com"
        await reaches(env, angry["message_id"], "complained")
        await reaches(env, fine["message_id"], "delivered")
        assert await suppressions(env) == {"gone@example.com": "bounce", "angry@example.com": "complaint"}
        again = await env.send(to=["gone@example.com"], subject="s", text="t")
        assert again["status"] == "dropped"
        assert fetched and all(u.endswith(".pem") for u in fetched)
        types = {e.type.rsplit(".", 1)[1] for e in await env.events()}
        assert {"bounced", "complained", "delivered"} <= types


async def test_platform_topic_routes_by_our_tags(platform: Platform, workspace: WorkspaceHandle,
                                                 other_workspace: WorkspaceHandle, moto_ses: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IONFLUX_SES_TOPIC_ARN", PLATFORM_TOPIC)
    async with feedback_env(platform, workspace, moto_ses) as (env, keys, _fetched):
        sent = await env.send(to=["gone@example.com"], subject="s", text="t")
        tags = {"ionflux_message_id": [sent["message_id"]], "ionflux_workspace": [workspace.id]}
        doc = sns_message(keys, message_id="sns-p1", topic_arn=PLATFORM_TOPIC,
                          message=bounce({"messageId": "unknown-to-us", "tags": tags}, "gone@example.com"))
        assert await post(env, doc) == 200
        await reaches(env, sent["message_id"], "bounced")
        assert await suppressions(env) == {"gone@example.com": "bounce"}
        other = {"Authorization": f"Bearer {other_workspace.token}"}
        listed = (await env.client.get("/v1/email/suppressions", headers=other)).json()
        assert listed["total"] == 0  # the other workspace's list is untouched


async def test_forged_and_duplicate_notifications(platform: Platform, workspace: WorkspaceHandle,
                                                  moto_ses: str) -> None:
    async with feedback_env(platform, workspace, moto_ses) as (env, keys, _fetched):
        await env.client.put("/v1/email/settings", headers=env.headers,
                             json={"provider": "ses", "ses_topic_arn": OWN_TOPIC})
        sent = await env.send(to=["a@example.com"], subject="s", text="t")
        mail = {"messageId": "x", "tags": {"ionflux_message_id": [sent["message_id"]]}}
        forged = sns_message(SnsKeys.generate(), message_id="sns-f", topic_arn=OWN_TOPIC,
                             message=bounce(mail, "a@example.com"))
        assert await post(env, forged) == 401
        genuine = sns_message(keys, message_id="sns-d", topic_arn=OWN_TOPIC, message=bounce(mail, "a@example.com"))
        tampered = {**genuine, "Message": genuine["Message"].replace("Permanent", "Transient")}
        assert await post(env, tampered) == 401
        view = await env.message(sent["message_id"])
        assert view["status"] == "sent" and await suppressions(env) == {}
        assert await post(env, genuine) == 200
        assert await post(env, genuine) == 200  # SNS retries: acknowledged, applied once
        await reaches(env, sent["message_id"], "bounced")
        await env.plugin.worker.run_once()
        view = await env.message(sent["message_id"])
        assert [h["status"] for h in view["history"]] == ["queued", "sent", "bounced"]
        bounced = [e for e in await env.events() if e.type.endswith(".bounced")]
        assert len(bounced) == 1


async def test_subscription_confirmation_is_verified_then_confirmed(platform: Platform, workspace: WorkspaceHandle,
                                                                    moto_ses: str) -> None:
    async with feedback_env(platform, workspace, moto_ses) as (env, keys, fetched):
        await env.client.put("/v1/email/settings", headers=env.headers,
                             json={"provider": "ses", "ses_topic_arn": OWN_TOPIC})
        forged = sns_message(SnsKeys.generate(), kind="SubscriptionConfirmation", message_id="sub-f",
                             topic_arn=OWN_TOPIC, message="You have chosen to subscribe")
        assert await post(env, forged) == 401
        doc = sns_message(keys, kind="SubscriptionConfirmation", message_id="sub-1", topic_arn=OWN_TOPIC,
                          message="You have chosen to subscribe")
        assert await post(env, doc) == 200
        await env.app.state.webhooks.drain()
        confirmations = [u for u in fetched if "Action=ConfirmSubscription" in u]
        assert confirmations == [doc["SubscribeURL"]]
        bad = await env.client.put("/v1/email/settings", headers=env.headers,
                                   json={"provider": "ses", "ses_topic_arn": "not-an-arn"})
        assert bad.status_code in (400, 422)
