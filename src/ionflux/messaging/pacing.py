"""Per-number throughput and per-recipient pacing on the HTTP toolkit's token buckets.

`NumberPacer` is the ProviderClient's limiter: one token bucket per phone number, each at that number's
own rate (80 msg/s by default, upgraded numbers more, Business-app numbers 20), with a short burst so
requests reach Meta evenly. Meta sends no Retry-After with 130429, so a throttled number also slows
down (halves its rate, at most once per second) and creeps back up on each success: additive increase,
multiplicative decrease, as TCP does, which is what keeps a 429 storm from repeating itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from ionflux.core.http.limiters import TokenBucketLimiter

PROFILE = "whatsapp"
MIN_RATE = 1.0


def number_key(phone_number_id: str) -> str:
    """The key ProviderClient uses for a call with `account=phone_number_id`."""
    return f"{PROFILE}:{phone_number_id}"


class NumberPacer(TokenBucketLimiter):
    def __init__(self, rate: float, *, burst_seconds: float = 0.1, clock: Callable[[], float] = time.monotonic):
        super().__init__(max(1.0, rate * burst_seconds), rate, clock=clock)
        self.burst_seconds = burst_seconds
        self._ceiling: dict[str, float] = {}
        self._slowed_at: dict[str, float] = {}
        self._strikes: dict[str, int] = {}

    def configure(self, key: str, rate: float) -> None:
        """Set `key`'s allowed rate (a number's own limit); a no-op when unchanged."""
        if self._ceiling.get(key) == rate:
            return
        self._ceiling[key] = rate
        bucket = self._bucket(key, self._clock())
        bucket.rate = rate
        bucket.capacity = max(1.0, rate * self.burst_seconds)

    def current_rate(self, key: str) -> float:
        return self._bucket(key, self._clock()).rate

    def throttled(self, key: str, retry_after: float | None) -> float:
        """Meta said 130429: slow `key` down and hold every caller; returns how long they are held."""
        now = self._clock()
        bucket = self._bucket(key, now)
        if now - self._slowed_at.get(key, float("-inf")) >= 1.0:
            bucket.rate = max(MIN_RATE, bucket.rate / 2)
            bucket.capacity = max(1.0, bucket.rate * self.burst_seconds)
            self._slowed_at[key] = now
        strikes = self._strikes[key] = self._strikes.get(key, 0) + 1
        hold = retry_after if retry_after is not None else min(4.0, 0.25 * 2 ** (strikes - 1))
        self.pause(key, hold)
        return hold

    def settle(self, key: str, cost: float, response: httpx.Response | None) -> float | None:
        if response is not None and response.status_code < 400:
            self._strikes.pop(key, None)
            bucket = self._bucket(key, self._clock())
            ceiling = self._ceiling.get(key, self.rate)
            if bucket.rate < ceiling:
                bucket.rate = min(ceiling, bucket.rate + max(ceiling / 100, 0.5))
                bucket.capacity = max(1.0, bucket.rate * self.burst_seconds)
        return super().settle(key, cost, response)


class PairPacer(TokenBucketLimiter):
    """Messages from one number to one user: a burst, then one per `interval` seconds (Meta's 131056)."""

    def __init__(self, burst: float, interval: float, *, clock: Callable[[], float] = time.monotonic):
        super().__init__(burst, 1.0 / interval, clock=clock)

    @staticmethod
    def key(phone_number_id: str, wa_id: str) -> str:
        return f"{phone_number_id}:{wa_id}"
