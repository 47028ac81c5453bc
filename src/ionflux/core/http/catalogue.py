"""Profiles of providers whose limits the fact sheet states (shared/API_FACTS.md); adapters take one and
override `base_url` from settings (`dataclasses.replace(SHOPIFY_ADMIN_REST, base_url=settings...)`).

Only documented or observed figures are here; a plan with other limits (Shopify Plus, an upgraded WhatsApp
number) is another profile, or the server's own reports (call-limit header, throttleStatus) correct it.
"""

from __future__ import annotations

from ionflux.core.http.profile import AuthStyle, LimiterSpec, ProviderProfile, RetryPolicy

# REST Admin: leaky bucket per app and store, 40 requests, leaking 2/s on Standard; `used/size` header.
SHOPIFY_ADMIN_REST = ProviderProfile(
    name="shopify",
    base_url="https://{shop}",
    limiter=LimiterSpec(kind="leaky_bucket", capacity=40, rate=2.0, feedback_header="X-Shopify-Shop-Api-Call-Limit"),
    auth=AuthStyle(header="X-Shopify-Access-Token", scheme=None),
)

# GraphQL Admin: calculated query cost; Standard stores observed at 2000 points restoring 100/s. The
# official client retries 429 and 503. Every call is a POST: adapters mark queries idempotent=True.
SHOPIFY_ADMIN_GRAPHQL = ProviderProfile(
    name="shopify_graphql",
    base_url="https://{shop}",
    limiter=LimiterSpec(kind="cost", capacity=2000, rate=100.0),
    retry=RetryPolicy(retry_statuses=frozenset({429, 503})),
    auth=AuthStyle(header="X-Shopify-Access-Token", scheme=None),
)

# Cloud API: 80 messages/s per business number by default (the account key is the phone number id).
WHATSAPP_CLOUD = ProviderProfile(
    name="whatsapp",
    base_url="https://graph.facebook.com",
    limiter=LimiterSpec(kind="token_bucket", capacity=80, rate=80.0),
    auth=AuthStyle(header="Authorization", scheme="Bearer"),
)
