"""Prometheus metrics of outbound provider calls, on the registry the app gives (one per app)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}
_SHARED: weakref.WeakKeyDictionary[CollectorRegistry, ProviderHttpMetrics] = weakref.WeakKeyDictionary()


class ProviderHttpMetrics:
    @classmethod
    def on(cls, registry: CollectorRegistry) -> ProviderHttpMetrics:
        """The metrics on `registry`, created once: every ProviderClient of an app shares them (by label)."""
        metrics = _SHARED.get(registry)
        if metrics is None:
            metrics = _SHARED[registry] = cls(registry)
        return metrics

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "ionflux_provider_requests_total",
            "Attempts sent to a provider, by answer (HTTP status, or timeout/connect_error/connection_error)",
            ["provider", "method", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "ionflux_provider_errors_total",
            "Provider calls that ended in an error, by IonfluxError code",
            ["provider", "code"],
            registry=registry,
        )
        self.retries = Counter(
            "ionflux_provider_retries_total", "Retried attempts, by reason", ["provider", "reason"], registry=registry
        )
        self.latency = Histogram(
            "ionflux_provider_request_seconds", "Latency of one attempt", ["provider"], registry=registry
        )
        self.circuit = Gauge(
            "ionflux_provider_circuit_state",
            "Circuit breaker per host: 0 closed, 1 half-open, 2 open",
            ["provider", "host"],
            registry=registry,
        )

    def circuit_state(self, provider: str, host: str, state: str) -> None:
        self.circuit.labels(provider, host).set(_STATE_VALUE[state])
