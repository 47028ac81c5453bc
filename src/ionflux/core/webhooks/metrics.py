"""Webhook counters on the platform's Prometheus registry (created once per registry)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Histogram

_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, WebhookMetrics] = weakref.WeakKeyDictionary()


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter("ionflux_webhooks_received_total", "Webhook deliveries accepted and stored",
                                ["provider"], registry=registry)
        self.rejected = Counter("ionflux_webhooks_rejected_total", "Webhook deliveries refused",
                                ["provider", "reason"], registry=registry)
        self.duplicates = Counter("ionflux_webhooks_duplicates_total",
                                  "Webhook deliveries acknowledged as duplicates (not published again)",
                                  ["provider"], registry=registry)
        self.latency = Histogram("ionflux_webhooks_ack_seconds", "Time from request to acknowledgement",
                                 ["provider"], registry=registry,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    @classmethod
    def on(cls, registry: CollectorRegistry) -> WebhookMetrics:
        metrics = _by_registry.get(registry)
        if metrics is None:
            metrics = _by_registry[registry] = cls(registry)
        return metrics
