"""A circuit breaker per host: stop calling a host that keeps failing, and probe it again after a cool-down."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from ionflux.core.errors import ProviderUnavailable
from ionflux.core.http.profile import BreakerSpec

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """closed → (N consecutive failures) → open → (cool-down) → half_open: one probe → closed or open again.

    Failures are connection errors, timeouts and 5xx; any other answer (4xx, 429) proves the host is up.
    """

    def __init__(self, host: str, spec: BreakerSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.spec = spec
        self._clock = clock
        self._failures = 0
        self._opened_at = 0.0
        self._open = False
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if not self._open:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.spec.cool_down else "open"

    def before_call(self, provider: str) -> None:
        """Raise ProviderUnavailable while open; in half-open, let exactly one probe through."""
        if not self.spec.enabled:
            return
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self._probing:
            self._probing = True
            return
        retry_after = max(0.0, self.spec.cool_down - (self._clock() - self._opened_at))
        raise ProviderUnavailable(
            f"{provider} is failing ({self.host}): circuit open, not calling it for now",
            details={"provider": provider, "circuit": state, "retry_after": round(retry_after, 3)},
        )

    def record_success(self) -> None:
        self._failures = 0
        self._open = False
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.spec.failure_threshold:
            self._open = True
            self._opened_at = self._clock()
        self._probing = False

    def release_probe(self) -> None:
        """The probe ended without telling us anything about the host (e.g. the caller was cancelled)."""
        self._probing = False


class BreakerBoard:
    """One breaker per host, created on first use."""

    def __init__(self, spec: BreakerSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def for_host(self, host: str) -> CircuitBreaker:
        breaker = self._breakers.get(host)
        if breaker is None:
            breaker = self._breakers[host] = CircuitBreaker(host, self.spec, clock=self._clock)
        return breaker

    def states(self) -> dict[str, BreakerState]:
        return {host: b.state for host, b in self._breakers.items()}
