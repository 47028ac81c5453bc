"""Prometheus metrics of vector memory: operation latency and records written, per backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Histogram


class MemoryMetrics:
    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> MemoryMetrics:
        """One set per registry: a registry refuses the same metric twice (several services in tests)."""
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram("ionflux_memory_operation_seconds", "Vector memory operation latency",
                                 ["backend", "operation"], registry=registry,
                                 buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5))
        self.written = Counter("ionflux_memory_vectors_written_total", "Vectors upserted", ["backend"],
                               registry=registry)

    @contextmanager
    def timed(self, backend: str, operation: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.latency.labels(backend, operation).observe(time.perf_counter() - started)


_BY_REGISTRY: WeakKeyDictionary[CollectorRegistry, MemoryMetrics] = WeakKeyDictionary()
