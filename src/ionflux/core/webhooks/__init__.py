"""Webhook ingestion: one pipeline (verify -> parse -> dedupe -> persist -> ack -> publish), many providers."""

from ionflux.core.webhooks.base import (
    Handshake,
    InboundPart,
    MalformedDelivery,
    NotConfigured,
    SignatureInvalid,
    WebhookProvider,
    WebhookRejected,
)
from ionflux.core.webhooks.inbox import InboxRecord, Stored, WebhookInbox
from ionflux.core.webhooks.models import WebhookDelivery
from ionflux.core.webhooks.pipeline import WebhookIngestion
from ionflux.core.webhooks.registry import WebhookRegistry, default_registry

__all__ = [
    "Handshake",
    "InboundPart",
    "InboxRecord",
    "MalformedDelivery",
    "NotConfigured",
    "SignatureInvalid",
    "Stored",
    "WebhookDelivery",
    "WebhookInbox",
    "WebhookIngestion",
    "WebhookProvider",
    "WebhookRegistry",
    "WebhookRejected",
    "default_registry",
]
