"""Client-side rate limiters, shared by every concurrent caller of one (provider, account) key.

In-process state. The `RateLimiter` protocol is the seam for a shared store (a Redis-backed limiter would
implement the same three calls), so adapters never know which one they have.

Not aiolimiter: it is a well-kept leaky bucket, but it has no public way to take the server's own report of
the bucket (Shopify's `used/size` header, GraphQL `throttleStatus`), to pause every caller on a Retry-After,
or to give up at a caller's deadline; those three are the point here, and the bucket itself is a few lines.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from ionflux.core.errors import RateLimited
from ionflux.core.http.profile import LimiterSpec

_MAX_ROUNDS = 100  # a caller re-queues at most this often (each pause that lands while it waits is one round)


class RateLimiter(Protocol):
    async def acquire(self, key: str, cost: float = 1.0, *, deadline: float | None = None) -> None:
        """Wait until `cost` may be spent on `key`; raise RateLimited if that is later than `deadline` (monotonic)."""

    def settle(self, key: str, cost: float, response: httpx.Response | None) -> float | None:
        """After an attempt (response None: no answer): learn from what the server reported.
        Return seconds to wait if the server said "throttled" in a way other than a 429 status."""

    def pause(self, key: str, seconds: float) -> None:
        """Hold every caller of `key` for `seconds` (a Retry-After)."""


@dataclass
class _Bucket:
    capacity: float
    rate: float  # drained (leaky) or restored (token, cost) per second
    level: float = 0.0  # spent and not yet drained, including callers' reservations
    at: float = 0.0
    in_flight: float = 0.0  # admitted, no answer yet
    reserved: float = 0.0  # waiting for their reserved turn
    paused_until: float = 0.0


class BucketLimiter:
    """A leaky bucket per key, which is also a token bucket (tokens = capacity - level) and a cost bucket.

    A caller that does not fit reserves its place (the level goes above capacity) and sleeps until its turn,
    so waiters are served in order and each wakes once; a pause arriving meanwhile sends it back to the queue.
    """

    def __init__(self, capacity: float, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("a rate limiter needs a positive capacity and rate")
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.capacity, self.rate, at=now)
        bucket.level = max(0.0, bucket.level - (now - bucket.at) * bucket.rate)
        bucket.at = now
        return bucket

    def available(self, key: str) -> float:
        """Capacity free right now (tokens, points) for `key`."""
        bucket = self._bucket(key, self._clock())
        return max(0.0, bucket.capacity - bucket.level)

    async def acquire(self, key: str, cost: float = 1.0, *, deadline: float | None = None) -> None:
        for _ in range(_MAX_ROUNDS):
            now = self._clock()
            bucket = self._bucket(key, now)
            cost = min(cost, bucket.capacity)
            if bucket.paused_until > now:
                self._check_deadline(key, bucket.paused_until - now, now, deadline)
                await asyncio.sleep(bucket.paused_until - now)
                continue
            wait = (bucket.level + cost - bucket.capacity) / bucket.rate
            if wait <= 0:
                bucket.level += cost
                bucket.in_flight += cost
                return
            self._check_deadline(key, wait, now, deadline)
            bucket.level += cost
            bucket.reserved += cost
            try:
                await asyncio.sleep(wait)
            except BaseException:
                bucket.level = max(0.0, bucket.level - cost)  # cancelled: the place goes to the next caller
                raise
            finally:
                bucket.reserved -= cost
            if bucket.paused_until <= self._clock():
                bucket.in_flight += cost
                return
            bucket.level = max(0.0, bucket.level - cost)  # paused while waiting: give the place back, queue again
        raise RateLimited(f"rate limiter for {key} kept pausing", details={"limiter": "local"})

    def _check_deadline(self, key: str, wait: float, now: float, deadline: float | None) -> None:
        if deadline is not None and now + wait > deadline:
            raise RateLimited(
                f"rate limit for {key}: the next slot is {wait:.2f}s away, past this call's deadline",
                details={"retry_after": round(wait, 3), "limiter": "local"},
            )

    def settle(self, key: str, cost: float, response: httpx.Response | None) -> float | None:
        bucket = self._bucket(key, self._clock())
        bucket.in_flight = max(0.0, bucket.in_flight - cost)
        if response is not None:
            return self._learn(bucket, response)
        return None

    def _learn(self, bucket: _Bucket, response: httpx.Response) -> float | None:
        return None

    def _adopt(self, bucket: _Bucket, used: float, capacity: float, rate: float | None = None) -> None:
        """Take the server's figures; callers it cannot have counted yet (in flight, queued) are added back."""
        if capacity > 0:
            bucket.capacity = capacity
        if rate:
            bucket.rate = rate
        bucket.level = max(0.0, used) + bucket.in_flight + bucket.reserved

    def pause(self, key: str, seconds: float) -> None:
        now = self._clock()
        bucket = self._bucket(key, now)
        bucket.paused_until = max(bucket.paused_until, now + seconds)


class LeakyBucketLimiter(BucketLimiter):
    """Shopify REST's model: each request adds one to a bucket of `capacity` that leaks `rate` per second.

    With `feedback_header` (e.g. `X-Shopify-Shop-Api-Call-Limit: 32/40`), the server's `used/size` replaces
    the estimate after each call, so a store with a larger bucket or other clients of the same store are seen.
    """

    def __init__(self, capacity: float, rate: float, *, feedback_header: str | None = None, **kw: Any) -> None:
        super().__init__(capacity, rate, **kw)
        self.feedback_header = feedback_header

    def _learn(self, bucket: _Bucket, response: httpx.Response) -> float | None:
        if self.feedback_header and (raw := response.headers.get(self.feedback_header)):
            used, _, size = raw.partition("/")
            try:
                self._adopt(bucket, float(used), float(size))
            except ValueError:
                pass
        return None


class TokenBucketLimiter(BucketLimiter):
    """`rate` tokens per second with bursts of up to `capacity` (e.g. WhatsApp's messages per second per number).

    Same arithmetic as the leaky bucket (tokens = capacity - level); a separate name because providers
    document it this way.
    """


class CostLimiter(BucketLimiter):
    """Shopify GraphQL's calculated query cost: `capacity` points, restored at `rate` per second, each call
    spending its cost. After each call the body's `extensions.cost.throttleStatus` {maximumAvailable,
    currentlyAvailable, restoreRate} replaces the estimate; `errors[].extensions.code == "THROTTLED"` means
    throttled whatever the HTTP status."""

    def _learn(self, bucket: _Bucket, response: httpx.Response) -> float | None:
        body = _json_body(response)
        if not isinstance(body, dict):
            return None
        cost = (body.get("extensions") or {}).get("cost") or {}
        status = cost.get("throttleStatus") if isinstance(cost, dict) else None
        if isinstance(status, dict):
            try:
                maximum = float(status["maximumAvailable"])
                available = float(status["currentlyAvailable"])
                rate = float(status["restoreRate"])
            except (KeyError, TypeError, ValueError):
                return None
            self._adopt(bucket, maximum - available, maximum, rate)
        if not _throttled(body):
            return None
        requested = cost.get("requestedQueryCost") if isinstance(cost, dict) else None
        shortfall = (float(requested) if isinstance(requested, int | float) else 1.0) - (bucket.capacity - bucket.level)
        return max(shortfall / bucket.rate, 1.0 / bucket.rate)


def _json_body(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _throttled(body: dict[str, Any]) -> bool:
    errors = body.get("errors")
    if not isinstance(errors, list):
        return False
    return any(
        isinstance(e, dict) and isinstance(e.get("extensions"), dict) and e["extensions"].get("code") == "THROTTLED"
        for e in errors
    )


def build_limiter(spec: LimiterSpec) -> BucketLimiter | None:
    if spec.kind == "none":
        return None
    if spec.kind == "leaky_bucket":
        return LeakyBucketLimiter(spec.capacity, spec.rate, feedback_header=spec.feedback_header)
    if spec.kind == "token_bucket":
        return TokenBucketLimiter(spec.capacity, spec.rate)
    return CostLimiter(spec.capacity, spec.rate)
