"""Webhook ingestion: one pipeline (verify -> parse -> dedupe -> persist -> ack -> publish), many providers.

`POST /webhooks/{provider}` (or `/webhooks/{provider}/{connection_id}` when the delivery does not name
its account) is verified on the raw bytes in constant time, mapped, deduplicated and written to the
`webhook_deliveries` inbox together with its outbox event in one transaction; the 200 is sent after
that commit and the outbox relay publishes. 401 = bad or stale signature, 400 = malformed,
404 = unknown provider/account, 413 = too large, 503 = no verification key configured.

| provider | signature                              | account (external_id)     | dedupe key      | replay window   |
|----------|----------------------------------------|---------------------------|-----------------|-----------------|
| shopify  | base64 HMAC-SHA256(body), 2 secrets    | X-Shopify-Shop-Domain     | event id, topic | 12 h (unsigned) |
| whatsapp | sha256=hex HMAC-SHA256(body)           | phone_number_id (split)   | SHA-256(body)   | 8 d (in body)   |
| stripe   | t=,v1= hex HMAC-SHA256("t.body")       | event `account`, or URL   | event id        | 300 s           |
| sendgrid | ECDSA P-256 over timestamp+body        | the URL                   | SHA-256(body)   | 25 h            |
| svix     | v1,base64 HMAC-SHA256("id.ts.body")    | the URL                   | webhook-id      | ±300 s          |
| sns      | RSA SHA1 (v1) / SHA256 (v2) of fields  | TopicArn                  | MessageId       | 24 h            |

Topics: `platform.<provider>.events.<resource>.<action>` (each provider module says how it maps; the
provider's own topic is always in `data.topic`). Event data: `{provider, topic, delivery_id, account,
connection_id, payload, webhook_delivery_id}`, plus `replay_of` on replays. Dedupe keys live as long as
the inbox rows (`IONFLUX_WEBHOOK_RETENTION_DAYS`, 8), longer than every replay window above.
"""

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
