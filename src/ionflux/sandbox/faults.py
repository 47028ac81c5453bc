"""Scripted failures, latency and rate-limit emulation that any simulator app gets.

A `FaultScript` is plain state (thread-safe: tests script it from one thread while the server runs in
another); `ionflux.sandbox.middleware.FaultMiddleware` is the ASGI layer that applies it to every request
and records the request log.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any, Literal

FaultKind = Literal["status", "timeout", "reset", "delay"]
RetryAfter = float | int | str | datetime | None

# The H11 protocol in `server.py` puts the connection's transport here so a fault can abort it.
TRANSPORT_EXTENSION = "ionflux.sandbox.transport"
ADMIN_PREFIX = "/_sandbox"


def format_retry_after(value: RetryAfter) -> str | None:
    """Seconds as given (`1`, `2.0`), or an HTTP-date for a datetime; strings pass through verbatim."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value, usegmt=True)
    return str(value)


@dataclass
class Fault:
    """One scripted behaviour, applied to the next `times` requests matching `method` and `path`."""

    kind: FaultKind
    status: int = 500
    body: str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # delay: extra latency; timeout: how long to hold before answering normally
    times: int | None = 1  # None: until cleared
    method: str | None = None
    path: str = ""  # path prefix; "" matches all

    @classmethod
    def respond(
        cls,
        status: int,
        *,
        body: str | dict[str, Any] | list[Any] | None = None,
        headers: dict[str, str] | None = None,
        retry_after: RetryAfter = None,
        times: int | None = 1,
        method: str | None = None,
        path: str = "",
    ) -> Fault:
        hdrs = dict(headers or {})
        formatted = format_retry_after(retry_after)
        if formatted is not None:
            hdrs["Retry-After"] = formatted
        return cls("status", status=status, body=body, headers=hdrs, times=times, method=method, path=path)

    @classmethod
    def too_many_requests(cls, retry_after: RetryAfter = 1, **kw: Any) -> Fault:
        return cls.respond(429, body=kw.pop("body", {"errors": "Too many requests"}), retry_after=retry_after, **kw)

    @classmethod
    def timeout(
        cls, seconds: float = 30.0, *, times: int | None = 1, method: str | None = None, path: str = ""
    ) -> Fault:
        """Hold the response for `seconds` (longer than the client's read timeout), then answer normally."""
        return cls("timeout", seconds=seconds, times=times, method=method, path=path)

    @classmethod
    def reset(cls, *, times: int | None = 1, method: str | None = None, path: str = "") -> Fault:
        """Close the TCP connection with a RST and no response at all."""
        return cls("reset", times=times, method=method, path=path)

    @classmethod
    def delay(cls, seconds: float, *, times: int | None = 1, method: str | None = None, path: str = "") -> Fault:
        return cls("delay", seconds=seconds, times=times, method=method, path=path)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method.upper() == method.upper()) and path.startswith(self.path)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        data = dict(data)
        if data.get("kind") not in ("status", "timeout", "reset", "delay"):
            raise TypeError(f"kind must be status, timeout, reset or delay, not {data.get('kind')!r}")
        retry_after = data.pop("retry_after", None)
        fault = cls(**data)
        if retry_after is not None:
            fault.headers["Retry-After"] = str(retry_after)
        return fault


@dataclass
class RateLimitRule:
    """A leaky bucket per key, as Shopify's REST Admin API runs one per app and store.

    Every matching request adds one unit; the bucket drains `leak_rate` units per second; a request that
    would overflow `capacity` gets `status` with `Retry-After` (fractional seconds, Shopify's style) and
    every response carries `limit_header: used/capacity` when `limit_header` is set.
    """

    capacity: int = 40
    leak_rate: float = 2.0
    path: str = ""
    method: str | None = None
    key_header: str | None = None  # bucket per value of this header (e.g. the access token); None: one bucket
    limit_header: str | None = "X-Shopify-Shop-Api-Call-Limit"
    status: int = 429
    body: str | dict[str, Any] | None = field(default_factory=lambda: {"errors": "Too many requests"})
    retry_after: str | None = None  # a fixed Retry-After instead of the bucket's own estimate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RateDecision:
    limited: bool
    headers: dict[str, str]
    rule: RateLimitRule


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    time: float  # wall clock (time.time())
    monotonic: float
    outcome: str = "passed"  # passed | status:<code> | rate_limited | timeout | reset

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", errors="replace")
        return data


class FaultScript:
    """What the simulator should do wrong next: a FIFO of faults, base latency, rate limits, and a request log."""

    def __init__(self, *, latency: float = 0.0, clock: Callable[[], float] = time.monotonic, max_log: int = 10_000):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rules: list[RateLimitRule] = []
        self._buckets: dict[tuple[int, str], tuple[float, float]] = {}  # (rule index, key) -> (level, at)
        self._log: deque[RecordedRequest] = deque(maxlen=max_log)
        self._clock = clock
        self.latency = latency
        self.closing = False  # set by the server on shutdown so held requests end promptly

    # -- faults --------------------------------------------------------------------------------------
    def push(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str) -> Fault | None:
        """The first pending fault matching this request, consuming one of its `times`."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            del self._faults[i]
                    return fault
        return None

    # -- rate limits ---------------------------------------------------------------------------------
    def add_rate_limit(self, rule: RateLimitRule) -> RateLimitRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rate_limits(self) -> None:
        with self._lock:
            self._rules.clear()
            self._buckets.clear()

    def check_rate_limit(self, method: str, path: str, headers: dict[str, str]) -> RateDecision | None:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if not ((rule.method is None or rule.method.upper() == method.upper()) and path.startswith(rule.path)):
                    continue
                key = headers.get(rule.key_header.lower(), "") if rule.key_header else ""
                now = self._clock()
                level, at = self._buckets.get((index, key), (0.0, now))
                level = max(0.0, level - (now - at) * rule.leak_rate)
                limited = level + 1 > rule.capacity
                out: dict[str, str] = {}
                if limited:
                    wait = (level + 1 - rule.capacity) / rule.leak_rate
                    out["Retry-After"] = rule.retry_after or f"{max(math.ceil(wait * 10) / 10, 0.1):.1f}"
                else:
                    level += 1
                self._buckets[(index, key)] = (level, now)
                if rule.limit_header:
                    out[rule.limit_header] = f"{min(math.ceil(level), rule.capacity)}/{rule.capacity}"
                return RateDecision(limited, out, rule)
        return None

    # -- request log ---------------------------------------------------------------------------------
    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._log.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()

    def reset_all(self) -> None:
        self.clear()
        self.clear_rate_limits()
        self.clear_requests()
        self.latency = 0.0
