"""How SendGrid and SES deliveries reach the right workspace, plugged into the shared pipeline
(`EmailPlugin.webhook_providers`). Verification is the core verifiers' own (subclasses, nothing re-implemented).

The platform's shared accounts post to `/webhooks/sendgrid` (and SES's SNS topic to `/webhooks/ses`): the
delivery is verified with the platform's key, then split per workspace by the ids we put in every message
(SendGrid custom args, SES tags/headers), each part routed through that workspace's `workspace:<id>`
connection, so each workspace's events are published in its own tenancy. A workspace's own SendGrid account
posts to `/webhooks/sendgrid/<its connection id>`, verified with its own key; its parts never leave it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from ionflux.core.webhooks.base import InboundPart, MalformedDelivery, digest, json_body, topic
from ionflux.core.webhooks.sendgrid import SendGridWebhooks
from ionflux.core.webhooks.sns import SnsWebhooks

WORKSPACE_ARG = "ionflux_workspace"


def workspace_account(workspace_id: str) -> str:
    return f"workspace:{workspace_id}"


class SendGridEvents(SendGridWebhooks):
    needs_connection_path = False  # the platform account's deliveries route per event, by our custom args

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        events = json_body(body)
        if not isinstance(events, list):
            raise MalformedDelivery("malformed", "a SendGrid delivery is a JSON array of events")
        parts: dict[str, list[Any]] = defaultdict(list)
        for item in events:
            owner = item.get(WORKSPACE_ARG) if isinstance(item, dict) else None
            parts[owner if isinstance(owner, str) and owner else ""].append(item)
        whole = digest(body)
        return [InboundPart(
            account=workspace_account(owner) if owner else None, delivery_id=whole,
            dedupe_key=f"{whole}:{owner}"[:255], topic="events",
            event_type=topic("sendgrid", "email_events", "received"),
            body=body if len(parts) == 1 else json.dumps(items).encode(), payload={"events": items},
        ) for owner, items in parts.items()]


class SesNotifications(SnsWebhooks):
    """SNS deliveries at `/webhooks/ses`. `platform_topic` is the platform's shared topic (split by our tags)."""

    name = "ses"

    def __init__(self, *args: Any, platform_topic: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.platform_topic = platform_topic

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundPart]:
        parts = super().parse(body, headers)
        if not self.platform_topic:
            return parts
        routed = []
        for part in parts:
            owner = _ses_owner(part.payload) if part.account == self.platform_topic else None
            routed.append(part if owner is None else InboundPart(
                account=workspace_account(owner), delivery_id=part.delivery_id, dedupe_key=part.dedupe_key,
                topic=part.topic, event_type=part.event_type, body=part.body, payload=part.payload,
                subject=part.subject))
        return routed


def _ses_owner(payload: Any) -> str | None:
    mail = payload.get("Message", {}).get("mail") if isinstance(payload, dict) and isinstance(
        payload.get("Message"), dict) else None
    if not isinstance(mail, dict):
        return None
    tags = mail.get("tags")
    if isinstance(tags, dict) and isinstance(tags.get(WORKSPACE_ARG), list) and tags[WORKSPACE_ARG]:
        return str(tags[WORKSPACE_ARG][0])
    for header in mail.get("headers") or []:
        if isinstance(header, dict) and str(header.get("name", "")).lower() == "x-ionflux-workspace":
            return str(header.get("value", "")) or None
    return None
