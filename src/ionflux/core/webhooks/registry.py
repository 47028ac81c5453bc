"""The providers the pipeline knows, by the name in `/webhooks/{provider}`."""

from __future__ import annotations

from collections.abc import Iterable

from ionflux.core.webhooks.base import WebhookProvider
from ionflux.core.webhooks.meta import WhatsAppWebhooks
from ionflux.core.webhooks.sendgrid import SendGridWebhooks
from ionflux.core.webhooks.shopify import ShopifyWebhooks
from ionflux.core.webhooks.sns import Fetcher, SnsWebhooks, https_fetcher
from ionflux.core.webhooks.standard import StandardWebhooks
from ionflux.core.webhooks.stripe import StripeWebhooks


class WebhookRegistry:
    def __init__(self, providers: Iterable[WebhookProvider] = ()) -> None:
        self._providers: dict[str, WebhookProvider] = {}
        for provider in providers:
            self.register(provider)

    def register(self, provider: WebhookProvider) -> None:
        self._providers[provider.name] = provider

    def get(self, name: str) -> WebhookProvider | None:
        return self._providers.get(name)

    def names(self) -> list[str]:
        return sorted(self._providers)


def default_registry(*, sns_fetcher: Fetcher = https_fetcher) -> WebhookRegistry:
    return WebhookRegistry([
        ShopifyWebhooks(), WhatsAppWebhooks(), StripeWebhooks(), SendGridWebhooks(), StandardWebhooks(),
        SnsWebhooks(sns_fetcher),
    ])
