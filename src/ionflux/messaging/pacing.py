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
    """Messages from one number to one user: a burst, then one per `interval` seconds (Meta's 131056).

    One bucket per pair would grow with every user ever messaged, so buckets that have drained (the pair is
    back to a full burst, nobody waiting) are forgotten every `prune_every` acquisitions.
    """

    def __init__(self, burst: float, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 prune_every: int = 10_000):
        super().__init__(burst, 1.0 / interval, clock=clock)
        self.prune_every = prune_every
        self._since_prune = 0

    async def acquire(self, key: str, cost: float = 1.0, *, deadline: float | None = None) -> None:
        self._since_prune += 1
        if self._since_prune >= self.prune_every:
            self._since_prune = 0
            self.prune()
        await super().acquire(key, cost, deadline=deadline)
        self.settle(key, cost, None)  # it paces sends, not calls in flight: nothing to wait for

    def prune(self) -> int:
        now = self._clock()
        idle = [k for k, b in self._buckets.items()
                if b.in_flight <= 0 and b.reserved <= 0 and b.paused_until <= now
                and b.level - (now - b.at) * b.rate <= 0]
        for key in idle:
            del self._buckets[key]
        return len(idle)

    def tracked(self) -> int:
        return len(self._buckets)

    @staticmethod
    def key(phone_number_id: str, wa_id: str) -> str:
        return f"{phone_number_id}:{wa_id}"
